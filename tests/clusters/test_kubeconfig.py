"""Reading kubeconfigs people paste: what works, and errors that say what to fix."""

from __future__ import annotations

import base64

import pytest

from clusters.kubeconfig import KubeconfigError, parse_kubeconfig

PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
CA = base64.b64encode(PEM.encode()).decode()


def kubeconfig(user: str = "token: t0ken", ca: str = f"certificate-authority-data: {CA}") -> str:
    return f"""
apiVersion: v1
kind: Config
current-context: prod
clusters:
- name: prod-eu
  cluster:
    server: https://10.0.0.1:6443
    {ca}
users:
- name: warden
  user:
    {user}
contexts:
- name: prod
  context: {{cluster: prod-eu, user: warden}}
"""


def test_it_reads_url_ca_and_token_of_the_current_context():
    access = parse_kubeconfig(kubeconfig())
    assert (access.api_url, access.ca_pem, access.token) == ("https://10.0.0.1:6443", PEM, "t0ken")
    assert access.cluster_name == "prod-eu"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("clusters: [", "not valid YAML at line 1"),
        ("kind: Pod", "not a kubeconfig"),
        (kubeconfig(user="exec: {command: aws}"), "logs in with a plugin"),
        (kubeconfig(user="client-certificate-data: AAAA"), "uses a client certificate"),
        (kubeconfig(user="username: bob"), "has no token"),
        (kubeconfig(ca="certificate-authority: /etc/ca.pem"), "certificate-authority-data"),
        (kubeconfig(ca="certificate-authority-data: '%%%'"), "not base64"),
    ],
)
def test_unusable_kubeconfigs_are_refused_with_the_fix(text, message):
    with pytest.raises(KubeconfigError, match=message):
        parse_kubeconfig(text)


def test_an_unknown_context_is_named():
    with pytest.raises(KubeconfigError, match="no context 'staging'"):
        parse_kubeconfig(kubeconfig(), context="staging")


def test_the_token_never_appears_in_an_error():
    text = kubeconfig(ca="certificate-authority: /x").replace("t0ken", "s3cr3t-token")
    with pytest.raises(KubeconfigError) as caught:
        parse_kubeconfig(text)
    assert "s3cr3t" not in str(caught.value)
