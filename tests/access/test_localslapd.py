"""The local slapd the demo and the tests start: a start that fails says why and where."""

from __future__ import annotations

import shutil

import pytest

from access.localslapd import LocalSlapd, SlapdError


def test_a_slapd_whose_files_went_away_says_where_to_look(tmp_path):
    # given: a configured directory whose database folder is gone (as when a demo that is
    # still shutting down removes the files a new demo has just written)
    server = LocalSlapd(tmp_path / "slapd", suffix="dc=gone,dc=test")
    server.configure()
    shutil.rmtree(tmp_path / "slapd" / "db")

    # when / then: slapd exits without a word, and the error still says what to check
    with pytest.raises(SlapdError) as failed:
        server.start()
    message = str(failed.value)
    assert message.startswith("slapd exited at start: no message (exit code ")
    assert str(tmp_path / "slapd") in message
    assert "a demo still shutting down" in message
