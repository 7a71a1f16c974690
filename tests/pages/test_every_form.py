"""Every form of every page, filled with what people (and attackers) type, as each persona.

The pages are crawled as a requester, an approver, an outsider and an operator see them; each
`<form method="post">` found is read (its fields, their types and choices, with Beautiful Soup)
and posted back with generated values (hypothesis): empty, huge, negative, zero, wrong type,
unknown names, very long text, unbroken 5,000-character words, HTML. No answer may be a server
error, and an answer that refuses the input (the form shown again with an error) must leave
every table as it was: nothing half-saved, nothing audited.

Forms that make Warden connect to a URL typed into them (registering or re-pointing a cluster or
a discovery source) and the directory sync are left out: the generated address would be
dialled. Their bad input is covered by tests/clusters/test_registration*.py and
tests/security/test_ssrf.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlparse

import pytest
from bs4 import BeautifulSoup
from django.apps import apps
from django.core.cache import cache
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from access.models import Grant, Role
from access.services import requests as request_services
from tests.factories import ask
from tests.fixtures.company import payments_may_break_glass_on_prod

pytestmark = [pytest.mark.django_db, pytest.mark.slow]

PERSONAS = ["alice", "judy", "mallory", "olivia"]
EXAMPLES_PER_FORM = 3
START = [
    "/",
    "/requests/new",
    "/inbox/",
    "/tokens/",
    "/why-forbidden/",
    "/who-can/",
    "/grants/",
    "/grants/new",
    "/roles/",
    "/policies/",
    "/policies/new",
    "/people/",
    "/reviews/",
    "/reviews/campaigns/new",
    "/clusters/",
    "/service-accounts/",
    "/service-accounts/new",
    "/audit/",
]
# Forms whose input Warden would dial (a generated URL), or that reach outside the process.
DIALS_OUT = ("/clusters/register", "/edit/", "/clusters/discovery", "/health/sync", "/logout")

WORDS = [
    "",
    " ",
    "0",
    "-1",
    "99999999999999999999",
    "99999999999d",
    "1.5",
    "abc",
    "4h",
    "staging",
    "payments",
    "no-such-cluster",
    "*",
    "team-?",
    "<script>alert(1)</script>",
    "' OR 1=1 --",
    "x" * 5000,
    "é∂ 漢字 \u202e",
]
text = st.one_of(st.sampled_from(WORDS), st.text(max_size=60))


@dataclass
class Field:
    name: str
    kind: str  # text, textarea, select, multiple, checkbox, radio, hidden, number, ...
    choices: list[str] = field(default_factory=list)
    value: str = ""


@dataclass
class Form:
    page: str
    action: str
    fields: dict[str, Field]

    def label(self) -> str:
        return f"{self.action} (from {self.page})"


def forms_on(path: str, html: str) -> list[Form]:
    found = []
    for form in BeautifulSoup(html, "html.parser").find_all("form"):
        if str(form.get("method", "get")).lower() != "post":
            continue
        action = urlparse(urljoin(path, str(form.get("action") or path))).path
        fields: dict[str, Field] = {}
        for element in form.find_all(["input", "select", "textarea"]):
            name = element.get("name")
            if not name or name == "csrfmiddlewaretoken":
                continue
            name = str(name)
            if element.name == "select":
                kind = "multiple" if element.has_attr("multiple") else "select"
                choices = [str(o.get("value", o.get_text())) for o in element.find_all("option")]
            elif element.name == "textarea":
                kind, choices = "textarea", []
            else:
                kind = str(element.get("type", "text")).lower()
                choices = [str(element.get("value", "on"))] if kind in ("checkbox", "radio") else []
            known = fields.get(name)
            if known is not None and kind in ("checkbox", "radio"):
                known.choices += choices
                continue
            fields[name] = Field(name, kind, choices, str(element.get("value", "")))
        found.append(Form(path, action, fields))
    return found


def crawl(client: Client) -> list[Form]:
    """The post forms the persona's pages hold, one per action (the first page found wins),
    from the start pages and every page they link to (requests, grants, policies, people...)."""
    seen_pages: set[str] = set()
    queue = list(START)
    forms: dict[str, Form] = {}
    while queue and len(seen_pages) < 150:
        path = queue.pop(0)
        if path in seen_pages:
            continue
        seen_pages.add(path)
        answer = client.get(path)
        assert answer.status_code < 500, path
        if answer.status_code != 200 or "text/html" not in answer.get("Content-Type", ""):
            continue
        html = answer.content.decode()
        for form in forms_on(path, html):
            if not any(part in form.action for part in DIALS_OUT):
                forms.setdefault(form.action, form)
        for link in BeautifulSoup(html, "html.parser").find_all("a", href=True):
            target = urlparse(urljoin(path, str(link["href"])))
            if target.netloc or not target.path.startswith("/") or target.path in seen_pages:
                continue
            if target.path.startswith(("/admin", "/api", "/static", "/oidc", "/logout")):
                continue
            queue.append(target.path)
    return list(forms.values())


def values_for(form: Form) -> st.SearchStrategy[dict[str, Any]]:
    strategies: dict[str, st.SearchStrategy[Any]] = {}
    for name, spec in form.fields.items():
        if spec.kind == "hidden":
            strategies[name] = st.one_of(st.just(spec.value), text)
        elif spec.kind in ("checkbox", "multiple"):
            pool = [*spec.choices, "no-such-choice"]
            strategies[name] = st.lists(st.sampled_from(pool), max_size=len(pool))
        elif spec.kind in ("radio", "select") and spec.choices:
            strategies[name] = st.one_of(st.sampled_from(spec.choices), text)
        else:
            strategies[name] = text
    return st.fixed_dictionaries(strategies)


def filled_with(form: Form, word: str) -> dict[str, Any]:
    """Every free-text field holds `word`; every choice its first (valid) option."""
    values: dict[str, Any] = {}
    for name, spec in form.fields.items():
        if spec.kind == "hidden":
            values[name] = spec.value
        elif spec.kind in ("checkbox", "multiple", "radio", "select"):
            values[name] = spec.choices[:1] if spec.choices else word
        else:
            values[name] = word
    return values


def everything_counted() -> dict[str, int]:
    counted = {}
    for label in ("access", "clusters"):
        for model in apps.get_app_config(label).get_models():
            counted[model._meta.label] = model._default_manager.count()
    return counted


# Rows a refusal may write on purpose (none today).
COUNTED_ON_PURPOSE: set[str] = set()


def refused(answer: Any) -> bool:
    """The form came back with an error to fix (nothing was meant to be saved)."""
    if answer.status_code >= 400:
        return True
    if answer.status_code != 200:
        return False
    page = BeautifulSoup(answer.content.decode(), "html.parser")
    return bool(page.select('[role="alert"].error, .errorlist, p.error'))


@pytest.fixture
def world(company: Any, make_cluster: Any) -> Any:
    """A staging cluster; alice's request waiting, bob's active, carol-less payments able to
    break glass on prod: forms to approve, deny, cancel, end, extend and review exist."""
    make_cluster(environment="staging")
    make_cluster(environment="prod")
    payments_may_break_glass_on_prod(company)
    ask(company, "alice")
    active = ask(company, "bob", "viewer")
    request_services.approve_request(active, company.judy)
    Grant.objects.create(
        team=company.teams["payments"], role=Role.objects.get(name="viewer"), reason="standing"
    )
    return company


def client_of(company: Any, who: str) -> Client:
    client = Client(raise_request_exception=False)
    client.force_login(company.users[who])
    return client


@pytest.mark.parametrize("who", PERSONAS)
def test_no_form_answers_a_server_error_or_half_saves(who: str, world: Any) -> None:
    # given every form any persona's pages hold: a persona also posts those of others, as an
    # attacker would (a refusal, with nothing saved)
    client = client_of(world, who)
    found: dict[str, Form] = {}
    for persona in PERSONAS:
        for form in crawl(client_of(world, persona)):
            found.setdefault(form.action, form)
    forms = list(found.values())
    assert len(forms) > 20, "too few forms found: the crawl is broken"

    def post(form: Form, values: dict[str, Any]) -> None:
        cache.clear()  # the login throttle and caches start afresh for each post
        before = everything_counted()
        answer = client.post(form.action, values)

        # then none is a server error, and a refusal changed nothing
        assert answer.status_code < 500, (who, form.label(), values)
        if refused(answer):
            after = everything_counted()
            changed = {
                k: (before[k], after[k])
                for k in before
                if before[k] != after[k] and k not in COUNTED_ON_PURPOSE
            }
            assert changed == {}, (who, form.label(), values, changed)

    # when each form is posted with each bad word in its free-text fields...
    for form in forms:
        for word in WORDS:
            post(form, filled_with(form, word))

    # ...and with generated values in every field at once
    @given(data=st.data())
    @settings(
        max_examples=EXAMPLES_PER_FORM,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def every_form(data: Any) -> None:
        for form in forms:
            post(form, data.draw(values_for(form), label=form.label()))

    every_form()
