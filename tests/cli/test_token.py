"""`warden token`, kubectl's credential plugin, against the real Dex (LDAP connector on slapd)."""

from __future__ import annotations

import base64
import io
import json
import time
from argparse import Namespace
from pathlib import Path
from typing import Any

import pytest

from tests.dex.login import cli_tokens
from tests.dex.server import CLI_CLIENT_ID, DexServer
from warden_cli import token as oidc_token
from warden_cli.main import main, token_exec


def _fake_token(exp: float) -> str:
    payload = base64.urlsafe_b64encode(json.dumps({"exp": exp}).encode()).rstrip(b"=").decode()
    return f"e30.{payload}.sig"


def _run(dex: DexServer, *extra: str) -> tuple[int, dict[str, Any]]:
    out = io.StringIO()
    code = main(
        ["token", "--issuer", dex.issuer, "--ca-file", str(dex.ca_path), "--no-sign-in", *extra],
        out=out,
    )
    return code, json.loads(out.getvalue()) if out.getvalue() else {}


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    return tmp_path


def _seed(dex: DexServer, tokens: dict[str, Any]) -> Path:
    path = oidc_token.cache_file(dex.issuer, CLI_CLIENT_ID)
    oidc_token.save(path, tokens)
    return path


def test_a_cached_token_that_is_still_valid_is_printed_as_an_exec_credential(
    dex: DexServer, cache: Path
) -> None:
    token = _fake_token(time.time() + 600)
    _seed(dex, {"id_token": token})

    code, credential = _run(dex)

    assert code == 0
    assert credential["kind"] == "ExecCredential"
    assert credential["apiVersion"] == "client.authentication.k8s.io/v1"
    assert credential["status"]["token"] == token


def test_an_expired_token_is_refreshed_at_the_provider(
    dex: DexServer, directory: Any, cache: Path
) -> None:
    # given: erin signed in earlier; her ID token has expired since
    directory.add_person("erin", password="erin-pw")
    tokens = cli_tokens(dex, "erin", "erin-pw")
    path = _seed(
        dex,
        {"id_token": _fake_token(time.time() - 5), **{"refresh_token": tokens["refresh_token"]}},
    )

    code, credential = _run(dex)

    assert code == 0
    fresh = credential["status"]["token"]
    claims = oidc_token.claims_of(fresh)
    assert claims["iss"] == dex.issuer
    assert claims["preferred_username"] == "erin"
    assert json.loads(path.read_text())["id_token"] == fresh
    assert oct(path.stat().st_mode & 0o777) == "0o600"


def test_a_person_removed_from_the_directory_cannot_refresh(
    dex: DexServer, directory: Any, cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # given
    directory.add_person("erin", password="erin-pw")
    tokens = cli_tokens(dex, "erin", "erin-pw")
    path = _seed(
        dex, {"id_token": _fake_token(time.time() - 5), "refresh_token": tokens["refresh_token"]}
    )

    # when: erin leaves the company
    directory.delete_person("erin")
    code, credential = _run(dex)

    # then
    assert code == 1
    assert credential == {}
    assert "refused to renew" in capsys.readouterr().err
    assert not path.exists()


def test_kubeconfig_can_name_warden_token_as_the_exec_plugin() -> None:
    found = token_exec(
        Namespace(
            issuer="https://sso.example.com",
            client_id="warden-cli",
            ca_file=None,
            warden_command="warden",
        )
    )

    assert found["command"] == "warden"
    assert found["args"] == [
        "token",
        "--issuer",
        "https://sso.example.com",
        "--client-id",
        "warden-cli",
    ]
    assert found["apiVersion"] == "client.authentication.k8s.io/v1"
