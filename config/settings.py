"""Warden's settings, read from the environment (see docs/configuration.md).

Local use needs nothing set: SQLite under var/, a broker kept in files under var/, no directory.
Production sets DATABASE_URL, CELERY_BROKER_URL, LDAP_* and SECRET_KEY; a missing or malformed
production setting stops start-up with ImproperlyConfigured naming the variable to fix.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import environ
from celery.schedules import crontab
from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured

from config.logconfig import FORMATS, logging_config

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()


def _secret(name: str, default: str | None = None) -> str | None:
    """A secret from NAME, or read from the file NAME_FILE names (Kubernetes/Docker secrets)."""
    path = env.str(f"{name}_FILE", default="")
    if path:
        try:
            return Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ImproperlyConfigured(f"{name}_FILE={path!r} cannot be read: {exc}") from exc
    value: str | None = env.str(name, default=default)
    return value


DEBUG = env.bool("DEBUG", default=False)
VAR_DIR = Path(env.str("WARDEN_VAR_DIR", default=str(BASE_DIR / "var")))

SECRET_KEY = _secret("SECRET_KEY") or ""
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY (or SECRET_KEY_FILE) must be set when DEBUG is off; "
            "for local use set DEBUG=1 (make run does)."
        )
    SECRET_KEY = "warden-local-development-only-not-secret"  # noqa: S105 - DEBUG only

# Fernet keys that encrypt secrets at rest (cluster credentials, service-account tokens): the
# first encrypts, all decrypt, so a key can be rotated in (manage.py rotate_encryption_key).
WARDEN_ENCRYPTION_KEYS = [
    key.strip() for key in (_secret("WARDEN_ENCRYPTION_KEYS") or "").split(",") if key.strip()
]
if not WARDEN_ENCRYPTION_KEYS and not DEBUG:
    raise ImproperlyConfigured(
        "WARDEN_ENCRYPTION_KEYS (or WARDEN_ENCRYPTION_KEYS_FILE) must be set when DEBUG is off: "
        'one or more Fernet keys, comma-separated, newest first. Make one with: python -c "from '
        'cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"'
    )

# Keys of the audit chain's HMAC (access/audit.py), kept outside the database so that its role
# cannot rewrite the trail consistently: the first signs new events, all verify (rotation: put
# the new key first and keep the old ones while their events are kept). At least 32 characters.
WARDEN_AUDIT_KEYS = [
    key.strip() for key in (_secret("WARDEN_AUDIT_KEYS") or "").split(",") if key.strip()
]
if not WARDEN_AUDIT_KEYS and not DEBUG:
    raise ImproperlyConfigured(
        "WARDEN_AUDIT_KEYS (or WARDEN_AUDIT_KEYS_FILE) must be set when DEBUG is off: one or more "
        "random keys of 32 characters or more, comma-separated, newest first. Make one with: "
        'python -c "import secrets; print(secrets.token_urlsafe(32))"'
    )
if any(len(key) < 32 for key in WARDEN_AUDIT_KEYS):
    raise ImproperlyConfigured("WARDEN_AUDIT_KEYS: every key must be 32 characters or more")
# Events written before the audit key have a plain SHA-256. Once the upgrade is done, set this to
# the last such event's number (manage.py verify_audit prints it): any later unkeyed event is
# then reported, even in a chain rewritten whole without the key.
WARDEN_AUDIT_UNKEYED_UNTIL = env.int("WARDEN_AUDIT_UNKEYED_UNTIL", default=None)

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "access",
    "clusters",
    "ascode",
]

MIDDLEWARE = [
    # Outermost, so that every response carries them, the probes' included.
    "csp.middleware.CSPMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "access.middleware.RequestIdMiddleware",
    # Its HTTPS redirect spares the probes (SECURE_REDIRECT_EXEMPT); it never checks the Host.
    "django.middleware.security.SecurityMiddleware",
    # /healthz, /readyz and /metrics for kubelet and Prometheus, before the Host header is checked
    # (CommonMiddleware) and before the request is counted (config/probes.py).
    "config.probes.ProbeMiddleware",
    "config.probes.RequestMetricsMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # A leaver's (or disabled account's) session ends at its next request.
    "access.middleware.LeaverMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------
# DATABASE_URL holds the password: DATABASE_URL_FILE reads it from a mounted Secret instead.
_database_url = _secret("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'warden.sqlite3'}"
try:
    DATABASES = {"default": env.db_url_config(_database_url)}
except (ValueError, KeyError) as exc:  # django-environ's answer to an unknown scheme
    raise ImproperlyConfigured(
        f"DATABASE_URL is not a database URL Warden understands ({exc}); "
        "use postgres://user:password@host:5432/name or sqlite:///path"
    ) from exc
DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("DATABASE_CONN_MAX_AGE", default=60))
# A connection kept between requests (and between a worker's tasks) is checked before reuse.
DATABASES["default"].setdefault("CONN_HEALTH_CHECKS", True)
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The web app, the worker and beat share the file: take the write lock when a transaction
    # begins (a read lock upgraded later fails at once with "database is locked"), wait up to
    # 30 s for it, and let readers go on beside a writer (WAL).
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        timeout=30,
        transaction_mode="IMMEDIATE",
        init_command="PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    )
    DATABASES["default"]["CONN_MAX_AGE"] = 0

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache ------------------------------------------------------------------------------------
# Shared by every web process (login throttling counts live here), so never per-process memory:
# the database by default (table warden_cache, made by `migrate`), or Redis
# (CACHE_URL=redis://host:6379/1; CACHE_URL_FILE when the URL holds a password).
_cache_url = _secret("CACHE_URL") or "dbcache://warden_cache"
try:
    CACHES = {"default": env.cache_url_config(_cache_url)}
except (ValueError, KeyError) as exc:
    raise ImproperlyConfigured(
        f"CACHE_URL is not a cache URL Warden understands ({exc}); "
        "use dbcache://warden_cache or redis://host:6379/1"
    ) from exc
if "locmem" in CACHES["default"]["BACKEND"] and not DEBUG:
    raise ImproperlyConfigured(
        "CACHE_URL names per-process memory: login throttling would count each process apart. "
        "Use dbcache://warden_cache or redis://host:6379/1"
    )

# --- Authentication ---------------------------------------------------------------------------
# Directory login (username and password checked against LDAP) and single sign-on with an
# OpenID Connect provider (OIDC_ENABLED) can each be on; the directory decides who people are
# either way. A local account (manage.py createsuperuser) logs in with its password only when
# WARDEN_LOCAL_ACCOUNTS names it (break-glass administration while the directory is down), and
# never when it is a directory person's account: a password set on someone's account opens
# nothing.
DIRECTORY_LOGIN = env.bool("WARDEN_DIRECTORY_LOGIN", default=True)
OIDC_ENABLED = env.bool("OIDC_ENABLED", default=False)
WARDEN_LOCAL_ACCOUNTS = env.list("WARDEN_LOCAL_ACCOUNTS", default=[])
AUTHENTICATION_BACKENDS = [
    *(["access.auth.DirectoryBackend"] if DIRECTORY_LOGIN else []),
    *(["access.oidc.DirectoryOIDCBackend"] if OIDC_ENABLED else []),
    "access.auth.LocalAccountBackend",
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

# --- Single sign-on (OpenID Connect, mozilla-django-oidc) -------------------------------------
# Endpoints come from {OIDC_ISSUER}/.well-known/openid-configuration. The person is the
# directory person named by the OIDC_MATCH_CLAIM claim (OIDC_MATCH: username, email or id);
# group claims are never read.
OIDC_PROVIDER_NAME = env.str("OIDC_PROVIDER_NAME", default="single sign-on")
OIDC_ISSUER = env.str("OIDC_ISSUER", default="")
OIDC_RP_CLIENT_ID = env.str("OIDC_CLIENT_ID", default="")
OIDC_RP_CLIENT_SECRET = _secret("OIDC_CLIENT_SECRET", default="") or ""
OIDC_RP_SCOPES = env.str("OIDC_SCOPES", default="openid email profile")
OIDC_RP_SIGN_ALGO = env.str("OIDC_SIGN_ALGO", default="RS256")
OIDC_MATCH = env.str("OIDC_MATCH", default="username")
OIDC_MATCH_CLAIM = env.str("OIDC_MATCH_CLAIM", default="")
# A CA bundle for a provider with a private CA; "true" trusts the system's CAs.
OIDC_VERIFY_SSL: str | bool = env.str("OIDC_CA_BUNDLE", default="") or True
OIDC_USE_PKCE = True
OIDC_USE_NONCE = True
OIDC_STORE_ID_TOKEN = True  # the logout's id_token_hint
OIDC_TIMEOUT = env.int("OIDC_TIMEOUT", default=10)
OIDC_CREATE_USER = False  # accounts are made only for directory people (access.oidc)
OIDC_RENEW_ID_TOKEN_EXPIRY_SECONDS = 15 * 60
if OIDC_MATCH not in ("username", "email", "id"):
    raise ImproperlyConfigured(f"OIDC_MATCH={OIDC_MATCH!r}: use username, email or id")
if OIDC_ENABLED:
    for _name, _value in (
        ("OIDC_ISSUER", OIDC_ISSUER),
        ("OIDC_CLIENT_ID", OIDC_RP_CLIENT_ID),
        ("OIDC_CLIENT_SECRET", OIDC_RP_CLIENT_SECRET),
    ):
        if not _value:
            raise ImproperlyConfigured(f"OIDC_ENABLED is set, but {_name} is empty")
    if not OIDC_ISSUER.startswith("https://"):
        raise ImproperlyConfigured("OIDC_ISSUER must be an https:// URL")

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# --- Security ---------------------------------------------------------------------------------
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=not DEBUG)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# Content-Security-Policy (django-csp) on every response: scripts, styles, images and fonts only
# from Warden's own static files, so no inline script or style (and no injected one) ever runs.
# htmx is vendored under static/js/; templates keep no inline <script>, <style> or style="".
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=False)
# Probes and Prometheus reach the pods over plain HTTP inside the cluster: never redirect them.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
if env.bool("USE_X_FORWARDED_PROTO", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# Login throttling (access/throttle.py): failures within WARDEN_LOGIN_LOCKOUT_SECONDS, counted
# per username and per client address separately; either limit reached refuses the login.
WARDEN_LOGIN_FAILURES_PER_USERNAME = env.int("WARDEN_LOGIN_FAILURES_PER_USERNAME", default=5)
WARDEN_LOGIN_FAILURES_PER_ADDRESS = env.int("WARDEN_LOGIN_FAILURES_PER_ADDRESS", default=30)
WARDEN_LOGIN_LOCKOUT_SECONDS = env.int("WARDEN_LOGIN_LOCKOUT_SECONDS", default=15 * 60)
# Proxies (addresses or CIDR ranges) whose X-Forwarded-For names the client; from anyone else
# the header is ignored. Empty: the client is the connection's peer (REMOTE_ADDR).
WARDEN_TRUSTED_PROXIES = env.list("WARDEN_TRUSTED_PROXIES", default=[])
try:
    for _proxy in WARDEN_TRUSTED_PROXIES:
        ipaddress.ip_network(_proxy.strip(), strict=False)
except ValueError as exc:
    raise ImproperlyConfigured(f"WARDEN_TRUSTED_PROXIES: {exc}") from exc

# --- Internationalisation and static files -----------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(VAR_DIR / "static")))
# Without collectstatic (local use, tests) WhiteNoise serves straight from static/.
WHITENOISE_USE_FINDERS = env.bool("WHITENOISE_USE_FINDERS", default=True)

# --- Celery -----------------------------------------------------------------------------------
# With no CELERY_BROKER_URL the broker is a folder under var/ (kombu's filesystem transport): the
# web app, a worker and beat on one machine share it with no server to install.
CELERY_BROKER_URL = _secret("CELERY_BROKER_URL") or "filesystem://"
if CELERY_BROKER_URL.startswith("filesystem://"):
    _broker_dir = VAR_DIR / "broker"
    _broker_dir.mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, Any] = {
        "data_folder_in": str(_broker_dir),
        "data_folder_out": str(_broker_dir),
        # kombu's default is ./control, relative to whatever directory a process started in.
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
else:
    # Redis: a task taken by a worker that died (acks_late: it was never acknowledged) goes back
    # to the queue once it has been out this long. It must exceed the longest task and the
    # longest retry countdown, or a slow task would be handed to a second worker meanwhile.
    CELERY_VISIBILITY_TIMEOUT = env.int("CELERY_VISIBILITY_TIMEOUT", default=3600)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": CELERY_VISIBILITY_TIMEOUT,
        # Look for such tasks every tenth of the timeout (at most every 60 s).
        "unacked_restore_interval": max(1, min(60, CELERY_VISIBILITY_TIMEOUT // 10)),
        "unacked_restore_throttle": 1,
    }
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
# The queue tasks go to and workers read (several Warden installations may share one broker).
CELERY_TASK_DEFAULT_QUEUE = env.str("CELERY_TASK_DEFAULT_QUEUE", default="celery")
# Workers log through LOGGING (config/celery.py), not Celery's own handlers.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_IGNORE_RESULT = True
# A task is acknowledged when it ends, so a worker that dies mid-task hands it to another.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Celery's Django fixup closes the database connection after every task unless told to reuse
# it; config/celery.py recycles connections the way Django does (CONN_MAX_AGE, broken ones).
CELERY_DB_REUSE_MAX = 10_000
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TIMEZONE = TIME_ZONE
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
DIRECTORY_SYNC_MINUTES = env.int("DIRECTORY_SYNC_MINUTES", default=15)
RECONCILE_MINUTES = env.int("RECONCILE_MINUTES", default=5)
# In a scheduled pass each worker process reads grants, roles and directory once per this many
# seconds for all the clusters it reconciles meanwhile (a change's own reconcile always reads
# afresh); 0: every cluster reads its own.
RECONCILE_SHARED_INPUTS_SECONDS = env.int("RECONCILE_SHARED_INPUTS_SECONDS", default=2)
if not 0 <= RECONCILE_SHARED_INPUTS_SECONDS <= 60:
    raise ImproperlyConfigured("RECONCILE_SHARED_INPUTS_SECONDS must be between 0 and 60")
DISCOVERY_MINUTES = env.int("DISCOVERY_MINUTES", default=10)
REVIEW_REMINDER_HOUR = env.int("REVIEW_REMINDER_HOUR", default=8)
if not 0 <= REVIEW_REMINDER_HOUR <= 23:
    raise ImproperlyConfigured("REVIEW_REMINDER_HOUR must be an hour of the day, 0 to 23")
# Service accounts: how often beat looks for rotations and grace periods that are due, how many
# due accounts one Celery task rotates together (sharing its queries, audit lock and cluster
# connections), how long a worker's claim on an account's rotation lasts if it dies mid-way,
# and how often every cluster is searched for long-lived (legacy) token Secrets.
SERVICE_ACCOUNT_ROTATION_MINUTES = env.int("SERVICE_ACCOUNT_ROTATION_MINUTES", default=5)
SERVICE_ACCOUNT_ROTATION_BATCH = env.int("SERVICE_ACCOUNT_ROTATION_BATCH", default=100)
SERVICE_ACCOUNT_LEASE_SECONDS = env.int("SERVICE_ACCOUNT_LEASE_SECONDS", default=300)
LEGACY_TOKEN_SCAN_HOURS = env.int("LEGACY_TOKEN_SCAN_HOURS", default=24)
# Roles a team member (not an operator) may give the service accounts their team owns.
SERVICE_ACCOUNT_SELF_SERVICE_ROLES = env.list(
    "SERVICE_ACCOUNT_SELF_SERVICE_ROLES", default=["viewer", "developer"]
)
# Namespaces no service account may be declared in (nor its roles name): the cluster's own
# and Warden's. Their ServiceAccounts (controllers, Warden's manager) are never Warden's to issue
# tokens for.
SERVICE_ACCOUNT_PROTECTED_NAMESPACES = env.list(
    "SERVICE_ACCOUNT_PROTECTED_NAMESPACES",
    default=["kube-system", "kube-public", "kube-node-lease", "warden", "warden-system"],
)
if not 1 <= SERVICE_ACCOUNT_ROTATION_MINUTES <= 59:
    raise ImproperlyConfigured("SERVICE_ACCOUNT_ROTATION_MINUTES must be between 1 and 59")
if not 1 <= SERVICE_ACCOUNT_ROTATION_BATCH <= 1000:
    raise ImproperlyConfigured("SERVICE_ACCOUNT_ROTATION_BATCH must be between 1 and 1000")
if SERVICE_ACCOUNT_LEASE_SECONDS < 30:
    raise ImproperlyConfigured("SERVICE_ACCOUNT_LEASE_SECONDS must be at least 30")
if not 1 <= LEGACY_TOKEN_SCAN_HOURS <= 24:
    raise ImproperlyConfigured("LEGACY_TOKEN_SCAN_HOURS must be between 1 and 24")
CELERY_BEAT_SCHEDULE: dict[str, dict[str, Any]] = {
    # Every cluster's RBAC back to the declared state (drift repair, expiry, leavers).
    "fleet-reconcile": {
        "task": "clusters.tasks.reconcile_fleet_task",
        "schedule": crontab(minute=f"*/{RECONCILE_MINUTES}"),
    },
    # Bindings outside Warden that give directory people access (shadow access), reported.
    "shadow-access-scan": {
        "task": "clusters.tasks.scan_fleet_shadow_access_task",
        "schedule": crontab(minute=0),
    },
    # Grants whose time is up end on the minute (and at worker start, after downtime).
    "expire-grants": {
        "task": "access.tasks.expire_grants_task",
        "schedule": crontab(minute="*"),
    },
    # Leavers whose grace (WARDEN_LEAVER_GRACE_HOURS) ran out lose their personal grants.
    "end-leavers-access": {
        "task": "access.tasks.end_leavers_access_task",
        "schedule": crontab(minute="7,37"),
    },
    # Tell requesters their access ends soon, with a one-click extend.
    "expiry-reminders": {
        "task": "access.tasks.expiry_reminders_task",
        "schedule": crontab(minute="*/15"),
    },
    # Register clusters found by each enabled discovery source (Cluster API, kubeconfig folder),
    # one task per source; clusters gone from a source are retired after its grace period.
    "cluster-discovery": {
        "task": "clusters.tasks.discover_all_task",
        "schedule": crontab(minute=f"*/{DISCOVERY_MINUTES}"),
    },
    # Service-account tokens: fan out one rotation task per account whose rotation is due, was
    # requested, was left half-done, or whose previous token's grace period has ended.
    "service-account-rotation": {
        "task": "clusters.tasks.rotate_due_service_accounts_task",
        "schedule": crontab(minute=f"*/{SERVICE_ACCOUNT_ROTATION_MINUTES}"),
    },
    # Find long-lived kubernetes.io/service-account-token Secrets on every cluster (report only).
    "legacy-token-scan": {
        "task": "clusters.tasks.scan_fleet_legacy_tokens_task",
        "schedule": crontab(minute=41, hour=f"*/{LEGACY_TOKEN_SCAN_HOURS}"),
    },
    # Mirror people and teams from the directory; leavers lose access one sync + reconcile later.
    "directory-sync": {
        "task": "access.tasks.sync_directory_task",
        "schedule": crontab(minute=f"*/{DIRECTORY_SYNC_MINUTES}"),
    },
    # Once a day: remind reviewers of access-review items past their campaign's due date (each
    # campaign's day is claimed once, so a second beat or a retry sends nothing twice).
    "access-review-reminders": {
        "task": "access.tasks.send_review_reminders_task",
        "schedule": crontab(hour=REVIEW_REMINDER_HOUR, minute=0),
    },
}

# --- Outbound connections (core/outbound.py) -------------------------------------------
# API URLs of clusters and discovery sources are https:// only: Warden's token goes with every
# request. http:// is for local testing against a plain kubesim, never with DEBUG off.
WARDEN_ALLOW_HTTP_API_URLS = env.bool("WARDEN_ALLOW_HTTP_API_URLS", default=False)
if WARDEN_ALLOW_HTTP_API_URLS and not DEBUG:
    raise ImproperlyConfigured(
        "WARDEN_ALLOW_HTTP_API_URLS is for local testing only (it sends cluster tokens in "
        "clear): unset it, or set DEBUG=1 on a machine of your own"
    )
# Cluster, discovery and webhook URLs may not reach these address ranges (link-local and cloud
# metadata services, where a request from Warden's pod could read the node's credentials)...
WARDEN_BLOCKED_NETWORKS = env.list(
    "WARDEN_BLOCKED_NETWORKS",
    default=["169.254.0.0/16", "fe80::/10", "fd00:ec2::254/128", "100.100.100.200/32"],
)
# ...except these (e.g. a cluster really reached over a link-local address).
WARDEN_ALLOWED_NETWORKS = env.list("WARDEN_ALLOWED_NETWORKS", default=[])
for _setting_name in ("WARDEN_BLOCKED_NETWORKS", "WARDEN_ALLOWED_NETWORKS"):
    for _value in globals()[_setting_name]:
        try:
            ipaddress.ip_network(_value.strip(), strict=False)
        except ValueError as exc:
            raise ImproperlyConfigured(
                f"{_setting_name}: {_value!r} is not an address range such as 169.254.0.0/16 "
                f"({exc})"
            ) from exc


def _admin_teams(raw: str) -> list[str]:
    """WARDEN_ADMIN_TEAMS: DNs separated by ";", or bare group names separated by ","."""
    separator = ";" if "=" in raw else ","
    return [entry.strip() for entry in raw.split(separator) if entry.strip()]


# --- Directory (LDAP / Active Directory) ------------------------------------------------------
# LDAP_SCHEMA picks the attribute names (openldap or ad); every name can be overridden.
LDAP_SCHEMA = env.str("LDAP_SCHEMA", default="openldap")
if LDAP_SCHEMA not in ("openldap", "ad"):
    raise ImproperlyConfigured(f"LDAP_SCHEMA={LDAP_SCHEMA!r}: use 'openldap' or 'ad'")
_ALL_SCHEMA_DEFAULTS: dict[str, dict[str, str]] = {
    "openldap": {
        "USER_FILTER": "(objectClass=inetOrgPerson)",
        "USERNAME_ATTR": "uid",
        "DISPLAY_NAME_ATTR": "displayName",
        "DISABLED_ATTR": "pwdAccountLockedTime",
        "GROUP_OWNER_ATTR": "owner",
        "GROUP_FILTER": (
            "(|(objectClass=groupOfNames)(objectClass=groupOfUniqueNames)(objectClass=posixGroup))"
        ),
    },
    "ad": {
        "USER_FILTER": "(&(objectCategory=person)(objectClass=user))",
        "USERNAME_ATTR": "sAMAccountName",
        "DISPLAY_NAME_ATTR": "displayName",
        "DISABLED_ATTR": "userAccountControl",
        "GROUP_OWNER_ATTR": "managedBy",
        "GROUP_FILTER": "(objectClass=group)",
    },
}
_SCHEMA_DEFAULTS = _ALL_SCHEMA_DEFAULTS[LDAP_SCHEMA]

WARDEN_DIRECTORY: dict[str, Any] = {
    "URI": env.str("LDAP_URI", default=""),
    "BIND_DN": env.str("LDAP_BIND_DN", default=""),
    "BIND_PASSWORD": _secret("LDAP_BIND_PASSWORD", default="") or "",
    "SCHEMA": LDAP_SCHEMA,
    "USER_BASE_DN": env.str("LDAP_USER_BASE_DN", default=""),
    "GROUP_BASE_DN": env.str("LDAP_GROUP_BASE_DN", default=""),
    "USER_FILTER": env.str("LDAP_USER_FILTER", default=_SCHEMA_DEFAULTS["USER_FILTER"]),
    "GROUP_FILTER": env.str("LDAP_GROUP_FILTER", default=_SCHEMA_DEFAULTS["GROUP_FILTER"]),
    "USERNAME_ATTR": env.str("LDAP_USERNAME_ATTR", default=_SCHEMA_DEFAULTS["USERNAME_ATTR"]),
    "EMAIL_ATTR": env.str("LDAP_EMAIL_ATTR", default="mail"),
    "DISPLAY_NAME_ATTR": env.str(
        "LDAP_DISPLAY_NAME_ATTR", default=_SCHEMA_DEFAULTS["DISPLAY_NAME_ATTR"]
    ),
    "DISABLED_ATTR": env.str("LDAP_DISABLED_ATTR", default=_SCHEMA_DEFAULTS["DISABLED_ATTR"]),
    "GROUP_NAME_ATTR": env.str("LDAP_GROUP_NAME_ATTR", default="cn"),
    # Leads: a person's manager (a DN) and a group's owners (DNs). They review standing access.
    "MANAGER_ATTR": env.str("LDAP_MANAGER_ATTR", default="manager"),
    "GROUP_OWNER_ATTR": env.str(
        "LDAP_GROUP_OWNER_ATTR", default=_SCHEMA_DEFAULTS["GROUP_OWNER_ATTR"]
    ),
    # Direct bind with a DN template (uid=%(user)s,ou=people,...) instead of search-then-bind.
    "USER_DN_TEMPLATE": env.str("LDAP_USER_DN_TEMPLATE", default=""),
    "START_TLS": env.bool("LDAP_START_TLS", default=False),
    "CA_CERT_FILE": env.str("LDAP_CA_CERT_FILE", default=""),
    "TLS_REQUIRE_CERT": env.bool("LDAP_TLS_REQUIRE_CERT", default=True),
    "PAGE_SIZE": env.int("LDAP_PAGE_SIZE", default=500),
    # AD range retrieval: `member` values asked for at a time (Windows serves at most 1,500).
    "MEMBER_RANGE_SIZE": env.int("LDAP_MEMBER_RANGE_SIZE", default=1500),
    "TIMEOUT": env.int("LDAP_TIMEOUT", default=10),
    # Members of these teams are Warden operators: staff and superuser. Name each group by its DN
    # (separated by ";", since DNs hold commas); a bare name (comma-separated) matches only the
    # group that holds that name in Warden, never a same-named group found later (access/sync.py).
    "ADMIN_TEAMS": _admin_teams(env.str("WARDEN_ADMIN_TEAMS", default="")),
    # A sync that would deactivate more than this share of active people stops and asks.
    "MAX_DEACTIVATE_SHARE": env.float("DIRECTORY_SYNC_MAX_DEACTIVATE_SHARE", default=0.10),
}
if not 0 <= WARDEN_DIRECTORY["MAX_DEACTIVATE_SHARE"] <= 1:
    raise ImproperlyConfigured("DIRECTORY_SYNC_MAX_DEACTIVATE_SHARE must be between 0 and 1")
if WARDEN_DIRECTORY["PAGE_SIZE"] < 1:
    raise ImproperlyConfigured("LDAP_PAGE_SIZE must be a positive number of entries")
if WARDEN_DIRECTORY["MEMBER_RANGE_SIZE"] < 0:
    raise ImproperlyConfigured("LDAP_MEMBER_RANGE_SIZE must be 0 (never ask) or a positive number")

# --- Requests, reviews and notifications ----------------------------------------------------
# Where people reach Warden (https://warden.example.com): links in emails and webhooks start here.
WARDEN_BASE_URL = env.str("WARDEN_BASE_URL", default="http://127.0.0.1:8000").rstrip("/")
# Requesters are reminded this many hours before their access ends (at most in its last quarter).
WARDEN_REMINDER_HOURS = env.int("WARDEN_REMINDER_HOURS", default=24)
# A person the directory disables or loses has their personal grants and requests ended this
# many hours later (0: at the sync that sees it); undone within it, nothing is lost.
WARDEN_LEAVER_GRACE_HOURS = env.int("WARDEN_LEAVER_GRACE_HOURS", default=0)
if WARDEN_LEAVER_GRACE_HOURS < 0:
    raise ImproperlyConfigured("WARDEN_LEAVER_GRACE_HOURS must be 0 or a positive number of hours")
# A chat or other webhook told of every request event (JSON POST), signed with the secret.
# HTTPS only; WARDEN_WEBHOOK_CA_FILE: a PEM bundle to trust instead of the system's CAs.
WARDEN_WEBHOOK_URL = env.str("WARDEN_WEBHOOK_URL", default="")
WARDEN_WEBHOOK_SECRET = _secret("WARDEN_WEBHOOK_SECRET", default="") or ""
WARDEN_WEBHOOK_CA_FILE = env.str("WARDEN_WEBHOOK_CA_FILE", default="")
if WARDEN_WEBHOOK_URL and not WARDEN_WEBHOOK_URL.lower().startswith("https://"):
    raise ImproperlyConfigured(
        "WARDEN_WEBHOOK_URL must be an https:// URL: request events carry people's names and "
        "reasons, and Warden sends webhooks over HTTPS only"
    )
# EMAIL_URL: smtp+tls://user:password@host:587 (STARTTLS), smtp+ssl://...:465 or smtp://...:25
# (or EMAIL_URL_FILE); the default prints emails to the console of the process that sends them.
try:
    globals().update(environ.Env.email_url_config(_secret("EMAIL_URL") or "consolemail://"))
except (ValueError, KeyError, ImproperlyConfigured) as exc:
    raise ImproperlyConfigured(
        f"EMAIL_URL is not an email URL Warden understands ({exc}); "
        "use smtp+tls://user:password@host:587 or consolemail://"
    ) from exc
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="warden@localhost")

# --- REST framework ---------------------------------------------------------------------------
# /api/v1/: personal API tokens (Authorization: Bearer wdn_...) for automation and the `warden`
# command line, and the browser's session (with CSRF) for the docs page and scripts in pages.
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "access.api.authentication.BearerTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "access.api.pagination.Pagination",
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "access.api.exceptions.exception_handler",
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    "PAGE_SIZE": 50,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Warden API",
    "DESCRIPTION": (
        "Kubernetes access from the company directory: roles, policies, grants, access "
        "requests and approvals, clusters, reviews and the audit trail. Authenticate with a "
        "personal API token (`Authorization: Bearer wdn_...`, made on the API tokens page or "
        "with `manage.py create_api_token`) or, from a browser, with your session."
    ),
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "access.api.schema.add_error_responses",
    ],
    "ENUM_NAME_OVERRIDES": {
        "EnvironmentEnum": "access.choices.Environment",
        "TierEnum": "access.choices.Tier",
        "ReconcileStatusEnum": "clusters.choices.ReconcileStatus",
        "RequestStateEnum": "access.choices.RequestState",
        "ClusterStateEnum": "clusters.choices.ClusterState",
    },
    # Swagger UI's files come from drf-spectacular-sidecar, served by Warden (CSP: 'self').
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# `warden kubeconfig` writes this as the user stanza of the clusters it adds: a kubeconfig
# `exec` credential plugin, as JSON or YAML (e.g. kubelogin for the clusters' OIDC issuer).
# "{cluster}" and "{username}" in its strings are replaced. Empty: the user adds credentials.
try:
    import yaml as _yaml

    WARDEN_KUBECONFIG_USER_EXEC: dict[str, Any] | None = (
        _yaml.safe_load(env.str("WARDEN_KUBECONFIG_USER_EXEC", default="")) or None
    )
except _yaml.YAMLError as exc:
    raise ImproperlyConfigured(f"WARDEN_KUBECONFIG_USER_EXEC is not JSON or YAML: {exc}") from exc
if WARDEN_KUBECONFIG_USER_EXEC is not None and not (
    isinstance(WARDEN_KUBECONFIG_USER_EXEC, dict) and WARDEN_KUBECONFIG_USER_EXEC.get("command")
):
    raise ImproperlyConfigured(
        "WARDEN_KUBECONFIG_USER_EXEC must be a kubeconfig exec stanza with at least a command, "
        'e.g. {"apiVersion": "client.authentication.k8s.io/v1", "command": "kubectl", '
        '"args": ["oidc-login", "get-token", "--oidc-issuer-url=https://sso.example.com"]}'
    )

# --- Logging ----------------------------------------------------------------------------------
# One line per record on stderr: LOG_FORMAT=json for log collectors (an object per line with the
# request/task id), plain for people. Secrets are scrubbed from every record (config/logconfig.py).
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOG_FORMAT = env.str("LOG_FORMAT", default="plain")
if LOG_FORMAT not in FORMATS:
    raise ImproperlyConfigured(f"LOG_FORMAT={LOG_FORMAT!r}: use one of {', '.join(FORMATS)}")
LOGGING: dict[str, Any] = logging_config(
    LOG_LEVEL,
    LOG_FORMAT,
    {"django_auth_ldap": {"level": env.str("LDAP_LOG_LEVEL", default="WARNING")}},
)

# --- Metrics ----------------------------------------------------------------------------------
# /metrics (Prometheus text format): scrapers send METRICS_TOKEN as a bearer token, and only they
# see /readyz's details. Required when DEBUG is off (the metrics name clusters, teams and queue
# lengths); local use may leave it empty, which opens both. Gunicorn workers and Celery prefork
# children write their samples to files under PROMETHEUS_MULTIPROC_DIR (read by
# prometheus_client itself), which /metrics adds up.
METRICS_TOKEN = _secret("METRICS_TOKEN", default="") or ""
if not METRICS_TOKEN and not DEBUG:
    raise ImproperlyConfigured(
        "METRICS_TOKEN (or METRICS_TOKEN_FILE) must be set when DEBUG is off: the bearer token "
        "Prometheus sends to /metrics (and that shows /readyz's details). Make one with: "
        'python -c "import secrets; print(secrets.token_urlsafe(32))"'
    )
# A Celery worker serves its own metrics (task counts and durations, reconciles) on this port;
# 0 = off.
WORKER_METRICS_PORT = env.int("WORKER_METRICS_PORT", default=0)
