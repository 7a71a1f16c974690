"""Settings for the test suite: config.settings with test-only speed-ups.

DATABASE_URL and CELERY_BROKER_URL still come from the environment, so CI runs the suite on
PostgreSQL and Redis and a laptop on SQLite.
"""

from __future__ import annotations

import os

os.environ.setdefault("DEBUG", "1")
os.environ.setdefault("WARDEN_VAR_DIR", "/tmp/warden-test-var")

from config.settings import *  # noqa: F403

DEBUG = False
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # noqa: F405
# Tasks run where they are queued, unless a test starts real workers against the broker.
CELERY_TASK_ALWAYS_EAGER = True
# Every test's data is its own: no inputs shared between reconciles (tests that need sharing
# turn it on).
RECONCILE_SHARED_INPUTS_SECONDS = 0
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
SESSION_COOKIE_SECURE = False
CSRF_COOKIE_SECURE = False
# A fixed key for the suite only (production keys come from WARDEN_ENCRYPTION_KEYS).
WARDEN_ENCRYPTION_KEYS = ["OtSVsMAzsHnxfcSlfLjnxu19VXjB3t21RlJbIij8Pf4="]
# A fixed audit key for the suite only (production's come from WARDEN_AUDIT_KEYS).
WARDEN_AUDIT_KEYS = ["suite-only-audit-key-0123456789abcdef"]
