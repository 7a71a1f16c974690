"""`make kube-apiserver` for people: one line when ready, an admin kubeconfig that works, and
nothing left running after Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
from kubernetes import client, config

from tests.k8s.control_plane import REPO


def test_it_prints_one_line_when_ready_serves_the_kubeconfig_and_stops_on_ctrl_c(
    kube_binaries, tmp_path
):
    kubeconfig = tmp_path / "kube-apiserver.kubeconfig"
    command = subprocess.Popen(
        [sys.executable, "-m", "tests.k8s.control_plane", "--kubeconfig", str(kubeconfig)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "WARDEN_BUILD_CACHE": str(kube_binaries.etcd.parent.parent)},
    )
    try:
        line = command.stdout.readline()  # type: ignore[union-attr]
        assert "ready at https://127.0.0.1:" in line and f"KUBECONFIG={kubeconfig}" in line, line
        assert oct(kubeconfig.stat().st_mode & 0o777) == "0o600"  # it holds the admin's token
        api = config.new_client_from_config(config_file=str(kubeconfig))
        assert client.VersionApi(api).get_code().git_version.startswith("v1.")
        names = [n.metadata.name for n in client.CoreV1Api(api).list_namespace().items]
        assert "warden-system" in names  # deploy/rbac/warden-manager.yaml, applied
        servers = psutil.Process(command.pid).children(recursive=True)
        assert len(servers) == 3  # etcd, kube-apiserver, kube-controller-manager

        command.send_signal(signal.SIGINT)

        assert command.wait(timeout=30) == 0
        _, alive = psutil.wait_procs(servers, timeout=10)
        assert alive == []
    finally:
        if command.poll() is None:
            command.kill()
            command.wait()


def test_the_readme_names_the_commands_the_makefile_has():
    makefile = (REPO / "Makefile").read_text()
    readme = (REPO / "README.md").read_text()
    for target in ("kube-apiserver-bin", "kube-apiserver", "test-kubernetes"):
        assert f"\n{target}:" in makefile
        assert f"make {target}" in readme
    assert Path(REPO / "tests" / "k8s" / "build.sh").stat().st_mode & 0o111
