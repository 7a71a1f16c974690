"""Liveness and the operators' health page: database, broker, directory, last sync."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from access import services
from access.choices import SyncStatus
from access.models import DirectorySync, Person

pytestmark = pytest.mark.django_db


@pytest.fixture
def developer(client):
    user = get_user_model().objects.create_user("dev")
    client.force_login(user)
    return user


def test_healthz_answers_without_login_or_database(client):
    with CaptureQueriesContext(connection) as queries:
        response = client.get("/healthz")
    assert response.status_code == 200 and response.content == b"ok"
    assert len(queries) == 0


def test_the_health_page_reports_every_dependency(client, operator, directory, settings):
    directory.add_person("alice")
    services.sync_directory()

    state = client.get(reverse("health") + "?format=json").json()

    assert state["checks"]["database"]["ok"]
    assert state["checks"]["directory"]["ok"]
    assert state["checks"]["broker"]["ok"], state["checks"]["broker"]
    assert state["checks"]["broker"]["transport"] == settings.CELERY_BROKER_URL.split("://")[0]
    assert state["last_sync"]["status"] == SyncStatus.SUCCEEDED
    assert state["ok"]


def test_a_down_broker_and_directory_are_reported_without_secrets(
    client, operator, directory, settings
):
    settings.CELERY_BROKER_URL = "redis://:broker-secret@127.0.0.1:1/0"
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {}
    settings.WARDEN_DIRECTORY = directory.settings(URI="ldap://127.0.0.1:9")

    response = client.get(reverse("health") + "?format=json")

    state = response.json()
    assert not state["ok"]
    assert not state["checks"]["broker"]["ok"]
    assert not state["checks"]["directory"]["ok"]
    assert "does not answer" in state["checks"]["directory"]["error"]
    assert "broker-secret" not in response.content.decode()
    assert "service-secret" not in response.content.decode()


def test_people_who_are_not_operators_cannot_see_health(client, developer):
    assert client.get(reverse("health")).status_code == 403


@pytest.fixture
def blocked(directory, settings):
    """A sync the guard stopped: one of four people vanished, 25 % > 10 %."""
    for i in range(4):
        directory.add_person(f"user{i}")
    services.sync_directory()
    settings.WARDEN_DIRECTORY = directory.settings(MAX_DEACTIVATE_SHARE=0.1)
    directory.delete_person("user0")
    run = services.sync_directory()
    assert run.status == SyncStatus.BLOCKED
    return run


def test_a_blocked_sync_is_shown_and_an_operator_confirms_it(client, operator, blocked):

    page = client.get(reverse("health")).content.decode()
    assert "Confirm this sync" in page and "user0" in page

    client.post(reverse("confirm-sync", args=[blocked.pk]))

    assert not Person.objects.get(username="user0").is_active
    assert DirectorySync.objects.filter(confirms=blocked, status=SyncStatus.SUCCEEDED).exists()


def test_only_operators_confirm_and_only_by_post_with_csrf(blocked):
    from django.test import Client

    url = reverse("confirm-sync", args=[blocked.pk])

    dev_client = Client()
    dev_client.force_login(get_user_model().objects.create_user("dev"))
    assert dev_client.post(url).status_code == 403

    csrf_client = Client(enforce_csrf_checks=True)
    csrf_client.force_login(get_user_model().objects.create_user("op", is_staff=True))
    assert csrf_client.get(url).status_code == 405
    assert csrf_client.post(url).status_code == 403  # no CSRF token
    assert Person.objects.get(username="user0").is_active


def test_sync_now_queues_a_sync(client, operator, directory, django_capture_on_commit_callbacks):
    directory.add_person("alice")
    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("sync-now"))
    assert DirectorySync.objects.filter(trigger="operator", status=SyncStatus.SUCCEEDED).exists()


def test_healthz_answers_a_head_request_too(client):
    assert client.head("/healthz").status_code == 200


def test_the_json_page_lists_recent_syncs_and_the_last_success(
    client, operator, directory, settings
):
    directory.add_person("alice")
    services.sync_directory()
    settings.WARDEN_DIRECTORY = directory.settings(USER_BASE_DN="ou=gone,dc=warden,dc=test")
    services.sync_directory()

    state = client.get(reverse("health-json")).json()

    assert [run["status"] for run in state["recent_syncs"]] == ["failed", "succeeded"]
    assert "does not exist" in state["last_sync"]["error"]
    assert state["last_successful_sync_at"] == state["recent_syncs"][1]["finished_at"]
    assert not state["checks"]["directory"]["ok"]


def test_people_who_are_not_operators_cannot_read_the_json_either(client, developer):
    assert client.get(reverse("health-json")).status_code == 403


def test_a_broker_that_is_up_is_checked_for_real(client, operator, settings):
    # CI's broker is Redis; locally, the filesystem broker. Either way a real connection is made.
    state = client.get(reverse("health-json")).json()

    broker = state["checks"]["broker"]
    assert broker["ok"], broker
    assert broker["transport"] == settings.CELERY_BROKER_URL.split("://")[0]


def test_a_down_broker_answers_quickly(client, operator, settings):
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {}

    state = client.get(reverse("health-json")).json()

    broker = state["checks"]["broker"]
    assert not broker["ok"] and broker["error"]
    assert broker["ms"] < 10_000


@pytest.mark.django_db(transaction=True)  # as in production: on_commit runs at once
def test_sync_now_says_so_when_the_broker_is_down(client, operator, monkeypatch):
    from kombu.exceptions import OperationalError

    from access.tasks import sync_directory_task

    def broker_down(*args, **kwargs):
        raise OperationalError("Error 111 connecting to 127.0.0.1:1. Connection refused.")

    monkeypatch.setattr(sync_directory_task, "delay", broker_down)

    response = client.post(reverse("sync-now"), follow=True)

    assert response.status_code == 200
    assert "could not be queued" in response.content.decode()
