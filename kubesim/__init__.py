"""kubesim: a Kubernetes API emulator for Warden's tests, benchmarks and demo.

Many independent clusters are served from one process and one loopback port, each under its
own path (`https://127.0.0.1:PORT/clusters/<name>`), with real RBAC evaluation, so the official
`kubernetes` client and kubectl talk to it as to kube-apiserver for the calls Warden makes.

Python API::

    from kubesim import KubeSim
    sim = KubeSim(tls=True).start()
    c = sim.add_cluster("prod-eu-1")          # c.server_url, c.ca_cert_pem, c.admin_token
    c.add_user("alice", token="t-alice", groups=["devs"])
    c.faults.latency_s = 0.01                 # also error_rate/status, unreachable,
    c.faults.throttle(n=3, retry_after=1)     # drop_connections
    c.counters[("list", "rolebindings")]      # requests by (verb, resource); c.reset_counters()
    sim.write_kubeconfig(path)                # a context per cluster, admin bearer token, CA
    sim.stop()

HTTP control API (for a kubesim in another process): `GET|POST /_kubesim/clusters`,
`DELETE /_kubesim/clusters/<name>`, `PUT|DELETE /_kubesim/clusters/<name>/faults`,
`GET|DELETE /_kubesim/clusters/<name>/counters`, `POST /_kubesim/clusters/<name>/users`,
`GET /_kubesim/clusters/<name>/requests` (the request log: start and end time, method, path, user agent, and
the most requests served at once; DELETE .../counters clears it).
Command line: `python -m kubesim --clusters a,b --kubeconfig PATH [--count N] [--http]`: HTTPS with
a generated CA unless `--http` asks for plain HTTP.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import yaml

from kubesim.cluster import Faults, SimCluster
from kubesim.server import KubeSimServer

__all__ = ["Faults", "KubeSim", "SimCluster"]


class KubeSim(KubeSimServer):
    """The emulator: a server plus the clusters it serves."""

    def write_kubeconfig(self, path: str | Path, clusters: list[str] | None = None) -> Path:
        names = clusters or sorted(self.clusters)
        doc: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Config",
            "preferences": {},
            "current-context": names[0] if names else "",
            "clusters": [],
            "users": [],
            "contexts": [],
        }
        for name in names:
            cluster = self.clusters[name]
            entry: dict[str, object] = {"server": cluster.server_url}
            if cluster.ca_cert_pem:
                entry["certificate-authority-data"] = base64.b64encode(cluster.ca_cert_pem).decode()
            doc["clusters"].append({"name": name, "cluster": entry})
            doc["users"].append({"name": f"{name}-admin", "user": {"token": cluster.admin_token}})
            doc["contexts"].append(
                {"name": name, "context": {"cluster": name, "user": f"{name}-admin"}}
            )
        target = Path(path)
        target.write_text(yaml.safe_dump(doc, sort_keys=False))
        target.chmod(0o600)
        return target
