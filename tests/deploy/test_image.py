"""The Dockerfile (no Docker engine here: what can be checked without building it) and
`manage.py check --deploy` with the production settings the manifests give."""

from __future__ import annotations

import fnmatch
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments out."""
    text = (ROOT / "Dockerfile").read_text()
    joined = re.sub(r"\\\n", " ", text)
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def stages() -> list[list[tuple[str, str]]]:
    found: list[list[tuple[str, str]]] = []
    for instruction in instructions():
        if instruction[0] == "FROM":
            found.append([])
        if found:
            found[-1].append(instruction)
    return found


def ignored() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def test_the_image_is_built_in_two_stages_from_a_slim_python():
    build, runtime = stages()
    args = dict(a.split("=", 1) for w, a in instructions() if w == "ARG" and "=" in a)
    assert "slim" in args["PYTHON_IMAGE"]
    assert build[0][1] == "${PYTHON_IMAGE} AS build"
    assert runtime[0][1] == "${PYTHON_IMAGE}"


def test_build_tools_and_headers_stay_in_the_build_stage():
    build, runtime = stages()
    build_runs = " ".join(a for w, a in build if w == "RUN")
    runtime_runs = " ".join(a for w, a in runtime if w == "RUN")
    for package in ("build-essential", "libldap2-dev", "libsasl2-dev"):
        assert package in build_runs
        assert package not in runtime_runs
    assert "libldap-2.5-0" in runtime_runs  # python-ldap's shared libraries only
    copies = [a for w, a in runtime if w == "COPY" and a.startswith("--from=build")]
    assert copies == ["--from=build /opt/warden /opt/warden"]


def test_it_runs_as_a_non_root_user_with_a_healthcheck_and_gunicorn_by_default():
    _build, runtime = stages()
    users = [a for w, a in runtime if w == "USER"]
    assert users == ["10001:10001"]
    runtime_runs = " ".join(a for w, a in runtime if w == "RUN")
    assert "useradd --system --uid 10001" in runtime_runs
    words = [w for w, _ in runtime]
    assert words.index("USER") > max(i for i, w in enumerate(words) if w == "RUN")
    healthcheck = next(a for w, a in runtime if w == "HEALTHCHECK")
    assert "/healthz" in healthcheck
    cmd = next(a for w, a in runtime if w == "CMD")
    assert cmd == '["gunicorn", "--config", "config/gunicorn.py", "config.wsgi"]'


def test_static_files_are_collected_at_build_time_into_static_root():
    _build, runtime = stages()
    env = " ".join(a for w, a in runtime if w == "ENV")
    assert "STATIC_ROOT=/app/staticfiles" in env and "WHITENOISE_USE_FINDERS=0" in env
    assert any("manage.py collectstatic --noinput" in a for w, a in runtime if w == "RUN")


def test_every_file_the_dockerfile_copies_exists_and_is_not_ignored():
    patterns = ignored()
    for stage in stages():
        for word, args in stage:
            if word != "COPY" or args.startswith("--from"):
                continue
            *sources, _target = args.split()
            for source in sources:
                assert (ROOT / source).exists(), source
                assert not any(fnmatch.fnmatch(source, p) for p in patterns), source
    # what runs in the image is there; tests, benchmarks and the emulator are not
    copied = {a.split()[0] for w, a in stages()[1] if w == "COPY" and not a.startswith("--")}
    assert {"manage.py", "templates", "static"} <= copied
    # every package of the project the server imports (all but the emulator and the CLI)
    include = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    packages = {p.rstrip("*") for p in include["packages"]["find"]["include"]}
    assert packages - {"kubesim", "warden_cli"} <= copied
    assert {"tests", "bench", "kubesim"} <= set(patterns)


def test_the_dependency_list_the_build_installs_is_pyprojects():
    build, _runtime = stages()
    step = next(a for w, a in build if w == "RUN" and "tomllib" in a)
    script = re.search(r'python -c "(.+?)" > requirements.txt', step)
    assert script is not None
    listed = subprocess.run(
        [sys.executable, "-c", script.group(1)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert listed == project["dependencies"]
    assert any(d.startswith("python-ldap") for d in listed)


def test_check_deploy_is_clean_with_the_production_settings_of_the_manifests(tmp_path):
    kustomize = ROOT / "deploy" / "kubernetes"
    config = yaml.safe_load((kustomize / "configmap.yaml").read_text())["data"]
    secrets = yaml.safe_load((kustomize / "secrets.example.yaml").read_text())["stringData"]
    secrets["secret-key"] = "k" * 20 + "production-grade-and-long-enough-" + "x" * 20
    for key, value in secrets.items():
        (tmp_path / key).write_text(value)
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DJANGO", "DEBUG", "DATABASE", "CELERY", "PYTEST"))
    }
    env.update(config)
    env.update(
        WARDEN_VAR_DIR=str(tmp_path / "var"),
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "metrics"),
        SECRET_KEY_FILE=str(tmp_path / "secret-key"),
        WARDEN_ENCRYPTION_KEYS_FILE=str(tmp_path / "encryption-keys"),
        WARDEN_AUDIT_KEYS_FILE=str(tmp_path / "audit-keys"),
        DATABASE_URL_FILE=str(tmp_path / "database-url"),
        CELERY_BROKER_URL_FILE=str(tmp_path / "broker-url"),
        LDAP_BIND_PASSWORD_FILE=str(tmp_path / "ldap-bind-password"),
        METRICS_TOKEN_FILE=str(tmp_path / "metrics-token"),
        DJANGO_SETTINGS_MODULE="config.settings",
    )

    checked = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "System check identified no issues" in checked.stdout

    # and the same check does fail on what a production deployment must not have
    env["SECURE_SSL_REDIRECT"] = "0"
    unsafe = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert unsafe.returncode != 0 and "security.W008" in unsafe.stderr + unsafe.stdout
