"""Benchmark: from an approver's click to the person's own kubectl being allowed.

Runs the real loop (tests/e2e/test_real_loop.py: Dex, slapd, the real kube-apiserver trusting
Dex, Warden on a live server, Chromium, kubectl with `warden token`) RUNS times, each in a fresh
pytest process, and reads the figure each run leaves in var/test-artifacts/real-loop.json: the
seconds from judy's click on Approve until `kubectl auth can-i create deployments` says yes with
erin's own ID token (the commit, the reconcile writing the RoleBinding, the API server's RBAC
cache, kubectl's round trip). Needs the real servers built (`make kube-apiserver-bin`).
Runs alone: `.venv/bin/python bench/approval_to_kubectl.py [--runs 3]`. The last line printed is
one JSON object of figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIGURE = ROOT / "var" / "test-artifacts" / "real-loop.json"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    env = {**os.environ, "WARDEN_REQUIRE_KUBE_APISERVER": "1"}
    figures: list[float] = []
    for run in range(1, args.runs + 1):
        FIGURE.unlink(missing_ok=True)
        started = time.monotonic()
        log(f"run {run}/{args.runs}: the real loop (about a minute and a half)")
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:cacheprovider",
                "tests/e2e/test_real_loop.py",
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0 or not FIGURE.exists():
            print(done.stdout[-3000:], done.stderr[-2000:], sep="\n")
            log(f"run {run} failed (exit {done.returncode})")
            return 1
        figure = float(json.loads(FIGURE.read_text())["approval_to_kubectl_s"])
        figures.append(figure)
        whole = time.monotonic() - started
        log(f"run {run}: approval to kubectl {figure:.3f}s (whole loop {whole:.0f}s)")
    print(
        json.dumps(
            {
                "approval_to_kubectl_s": round(statistics.median(figures), 3),
                "approval_to_kubectl_max_s": round(max(figures), 3),
                "runs": len(figures),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
