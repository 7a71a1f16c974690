"""`python -m kubesim`: serve emulated clusters until stopped."""

from __future__ import annotations

import argparse
import signal
import threading

from kubesim import KubeSim


def main() -> None:
    parser = argparse.ArgumentParser(prog="kubesim", description="Kubernetes API emulator")
    parser.add_argument("--clusters", default="", help="comma-separated cluster names")
    parser.add_argument("--count", type=int, default=0, help="start N clusters named sim-0001…")
    parser.add_argument("--kubeconfig", default="", help="write a kubeconfig with a context each")
    parser.add_argument(
        "--http",
        action="store_true",
        help="serve plain HTTP instead of HTTPS (kubectl sends no bearer token over plain HTTP)",
    )
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--namespaces", type=int, default=0, help="create ns-001… in each cluster")
    args = parser.parse_args()

    sim = KubeSim(tls=not args.http, port=args.port)
    names = [n for n in args.clusters.split(",") if n]
    names += [f"sim-{i:04d}" for i in range(1, args.count + 1)]
    for name in names:
        cluster = sim.add_cluster(name)
        cluster.faults.latency_s = args.latency_ms / 1000
        for i in range(1, args.namespaces + 1):
            cluster.apply({"kind": "Namespace", "metadata": {"name": f"ns-{i:03d}"}})
    if args.kubeconfig and names:
        sim.write_kubeconfig(args.kubeconfig)
    sim.start()
    print(f"kubesim ready on {sim.url} with {len(names)} cluster(s)", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    sim.stop()


if __name__ == "__main__":
    main()
