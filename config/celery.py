"""The Celery application: the same code runs eagerly in tests, on a file broker in the demo and
on Redis or RabbitMQ in production."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("warden")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
