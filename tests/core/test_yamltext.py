"""Pasted YAML that is not YAML: the line to fix, never the text (it may hold a token)."""

from __future__ import annotations

import pytest

from core import yamltext

SECRET = "eyJhbGciOiJSUzI1NiJ9.c2VjcmV0LXRva2Vu"


@pytest.mark.parametrize(
    ("text", "line"),
    [
        (f"users:\n- name: a\n  user: {{token: {SECRET}\n", 4),
        (f"a: 1\nb: [{SECRET}\n", 3),
        (f"key: value\n\t{SECRET}: tab\n", 2),
    ],
)
def test_the_error_names_the_line_and_never_quotes_the_text(text, line):
    with pytest.raises(yamltext.NotValidYAML) as caught:
        yamltext.safe_load(text)

    assert str(caught.value) == f"not valid YAML at line {line}"
    assert caught.value.line == line
    assert SECRET not in str(caught.value) and SECRET not in caught.value.problem


def test_yaml_is_read_as_safe_yaml():
    with pytest.raises(yamltext.NotValidYAML):
        yamltext.safe_load("!!python/object/apply:os.system ['true']")
    assert yamltext.safe_load("a: [1, 2]") == {"a": [1, 2]}
