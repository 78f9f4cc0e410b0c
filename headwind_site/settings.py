"""Headwind settings, read from environment variables with safe defaults.

Development is opt-in (``HEADWIND_DEV=true`` or ``DEBUG=true``): outside it a ``SECRET_KEY`` must be
given, because a guessable key would let anyone forge sessions and approve updates.
"""

from __future__ import annotations

import ipaddress
import os
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlparse

from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured

from headwind_site.config import ConfigError, OperatorSettings, number, parse_bool

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool = False) -> bool:
    try:
        return parse_bool(name, os.environ.get(name), default)
    except ConfigError as exc:
        raise ImproperlyConfigured(str(exc)) from None


def env_int(name: str, default: int, minimum: int = 0) -> int:
    try:
        return int(number(os.environ, name, default, minimum=minimum, whole=True))
    except ConfigError as exc:
        raise ImproperlyConfigured(str(exc)) from None


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def database_from_url(url: str, password: str | None = None) -> dict:
    """Turn ``postgres://user:pass@host:port/name`` or ``sqlite:///path`` into a DATABASES entry.

    PostgreSQL: ``password`` (``DATABASE_PASSWORD``) replaces the URL's, so a Secret can hold
    the password alone, with no URL encoding; query parameters are libpq's connection
    parameters (``?sslmode=verify-full&sslrootcert=/etc/ssl/db.crt``, ``connect_timeout``).
    """
    parsed = urlparse(url)
    if parsed.scheme in {"postgres", "postgresql", "pgsql"}:
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": unquote(parsed.path.lstrip("/")),
            "USER": unquote(parsed.username or ""),
            "PASSWORD": password if password is not None else unquote(parsed.password or ""),
            "HOST": parsed.hostname or "",
            "PORT": str(parsed.port or ""),
            # Connections are kept a minute, and checked before reuse: a database restart or
            # failover costs a reconnect, not the first request after it.
            "CONN_MAX_AGE": 60,
            "CONN_HEALTH_CHECKS": True,
            "OPTIONS": dict(parse_qsl(parsed.query)),
        }
    if parsed.scheme == "sqlite":
        # Several processes share the file (web, operator mirror, worker): WAL lets readers and
        # one writer work at once, IMMEDIATE takes the write lock up front instead of failing
        # an upgrade half way, and the busy timeout waits for the lock instead of answering
        # "database is locked". PostgreSQL remains the production answer (docs/deploy.md).
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": parsed.path or ":memory:",
                "OPTIONS": {"init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                            "transaction_mode": "IMMEDIATE", "timeout": 20}}
    raise ImproperlyConfigured(f"DATABASE_URL has an unsupported scheme: {parsed.scheme!r}")


DEBUG = env_bool("DEBUG")
DEV_MODE = DEBUG or env_bool("HEADWIND_DEV")

SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEV_MODE:
        raise ImproperlyConfigured(
            "SECRET_KEY is required (set HEADWIND_DEV=true for a local development key)."
        )
    SECRET_KEY = "headwind-dev-only-insecure-key"

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]" if DEV_MODE else "")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    # daphne's app only makes `manage.py runserver` serve ASGI (WebSockets), for development;
    # it imports Twisted (about 25 MB) into every process that sets Django up. The web process
    # runs uvicorn (headwind_site.web), the worker and the operator never need it.
    *(["daphne"] if DEV_MODE else []),
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_htmx",
    "django_prometheus",
    "channels",
    "csp",
    "axes",
    "operator_app",
    "approvals",
    "registry",
    "headwind_site",  # the management commands that wire the apps together (running.py)
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "approvals.auth.TrustedProxyMiddleware",  # X-Forwarded-User, from trusted addresses only
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "axes.middleware.AxesMiddleware",  # answers 429 to a locked-out login form
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "headwind_site.urls"
WSGI_APPLICATION = "headwind_site.wsgi.application"
ASGI_APPLICATION = "headwind_site.asgi.application"

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

# PostgreSQL in production (deploy/manifests and the Helm chart set a postgres:// URL, and the
# password apart in DATABASE_PASSWORD); SQLite, the default here, for the demo and development.
_database_password = os.environ.get("DATABASE_PASSWORD")
if _database_password is not None and not _database_password:
    raise ImproperlyConfigured("DATABASE_PASSWORD is set but empty: fill it in (the Secret's "
                               "template is empty on purpose), or remove it")
DATABASES = {
    "default": database_from_url(
        os.environ.get("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
        _database_password,
    )
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

# --- Who may sign in (approvals/auth.py, approvals/oidc.py; docs/approvals.md) -------------
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",  # first: refuses a locked-out login before checking
    "django.contrib.auth.backends.ModelBackend",
]
LOGIN_REDIRECT_URL = "/"

# Login-form throttling (django-axes): after AXES_FAILURE_LIMIT failures for one account from
# one client address, that pair is locked out for the cool-off (429). Keying by the pair means
# a flood against one account from one address never locks its owner out elsewhere, and one
# noisy client behind the ingress never locks out everyone else. The client address is
# approvals.auth.client_address: X-Forwarded-For counts only through HEADWIND_TRUSTED_PROXIES.
AXES_FAILURE_LIMIT = env_int("HEADWIND_LOGIN_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("HEADWIND_LOGIN_COOLOFF_MINUTES", 15, minimum=1))
AXES_LOCKOUT_PARAMETERS = [["ip_address", "username"]]
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "approvals.auth.client_address"
AXES_WHITELIST_CALLABLE = "approvals.auth.not_a_password_login"  # SSO callbacks are not throttled
AXES_VERBOSE = False
LOGOUT_REDIRECT_URL = "/"

# A reverse proxy's user header is believed only from these addresses (CIDRs, comma-separated).
HEADWIND_TRUSTED_PROXIES = env_list("HEADWIND_TRUSTED_PROXIES")
for _entry in HEADWIND_TRUSTED_PROXIES:
    try:
        ipaddress.ip_network(_entry, strict=False)
    except ValueError as _exc:
        raise ImproperlyConfigured(f"HEADWIND_TRUSTED_PROXIES: {_exc}") from None
HEADWIND_PROXY_USER_HEADER = os.environ.get("HEADWIND_PROXY_USER_HEADER", "X-Forwarded-User")
HEADWIND_PROXY_GROUPS_HEADER = os.environ.get("HEADWIND_PROXY_GROUPS_HEADER",
                                              "X-Forwarded-Groups")

# Kubernetes bearer tokens on the API: TokenReview audiences (empty: the API server's own).
HEADWIND_TOKEN_AUDIENCES = env_list("HEADWIND_TOKEN_AUDIENCES")

# OpenID Connect single sign-on (mozilla-django-oidc).
HEADWIND_OIDC_ENABLED = env_bool("HEADWIND_OIDC_ENABLED")
HEADWIND_OIDC_USERNAME_CLAIM = os.environ.get("HEADWIND_OIDC_USERNAME_CLAIM",
                                              "preferred_username")
HEADWIND_OIDC_GROUPS_CLAIM = os.environ.get("HEADWIND_OIDC_GROUPS_CLAIM", "groups")
HEADWIND_OIDC_ISSUER = os.environ.get("HEADWIND_OIDC_ISSUER", "")  # required with OIDC
HEADWIND_OIDC_GROUP_MAP = dict(
    item.split("=", 1) for item in env_list("HEADWIND_OIDC_GROUP_MAP") if "=" in item
)
if HEADWIND_OIDC_ENABLED:
    _missing = [name for name in (
        "HEADWIND_OIDC_CLIENT_ID", "HEADWIND_OIDC_CLIENT_SECRET",
        "HEADWIND_OIDC_AUTHORIZATION_ENDPOINT", "HEADWIND_OIDC_TOKEN_ENDPOINT",
        "HEADWIND_OIDC_USERINFO_ENDPOINT", "HEADWIND_OIDC_ISSUER",
    ) if not os.environ.get(name)]
    if _missing:
        raise ImproperlyConfigured(f"HEADWIND_OIDC_ENABLED needs {', '.join(_missing)}")
    INSTALLED_APPS.append("mozilla_django_oidc")
    AUTHENTICATION_BACKENDS.insert(1, "approvals.oidc.HeadwindOIDCBackend")
    OIDC_RP_CLIENT_ID = os.environ["HEADWIND_OIDC_CLIENT_ID"]
    OIDC_RP_CLIENT_SECRET = os.environ["HEADWIND_OIDC_CLIENT_SECRET"]
    OIDC_OP_AUTHORIZATION_ENDPOINT = os.environ["HEADWIND_OIDC_AUTHORIZATION_ENDPOINT"]
    OIDC_OP_TOKEN_ENDPOINT = os.environ["HEADWIND_OIDC_TOKEN_ENDPOINT"]
    OIDC_OP_USER_ENDPOINT = os.environ["HEADWIND_OIDC_USERINFO_ENDPOINT"]
    OIDC_OP_JWKS_ENDPOINT = os.environ.get("HEADWIND_OIDC_JWKS_ENDPOINT") or None
    OIDC_RP_SIGN_ALGO = os.environ.get("HEADWIND_OIDC_SIGN_ALGO", "RS256")
    OIDC_RP_SCOPES = os.environ.get("HEADWIND_OIDC_SCOPES", "openid email profile")
    OIDC_USE_PKCE = env_bool("HEADWIND_OIDC_USE_PKCE", True)
    OIDC_TIMEOUT = 10

# --- Browser hardening ---------------------------------------------------------------------
# A strict Content-Security-Policy (django-csp): the dashboard and the admin load scripts and
# styles only from Headwind itself, with no inline script or style anywhere.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],
        "connect-src": [SELF],  # the live dashboard's WebSocket is same-origin
        "form-action": [SELF],
        "frame-ancestors": [NONE],
        "base-uri": [NONE],
        "object-src": [NONE],
    },
}
# Session and CSRF cookies only over HTTPS, on by default outside development.
HEADWIND_SECURE_COOKIES = env_bool("HEADWIND_SECURE_COOKIES", not DEV_MODE)
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = HEADWIND_SECURE_COOKIES
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT", BASE_DIR / "var" / "static"))
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# The operator's, worker's and poller's own knobs (polling, verification, metrics ports,
# expiry, TokenReview cache): read and checked once, here (headwind_site/config.py).
try:
    HEADWIND = OperatorSettings.from_environ(os.environ)
except ConfigError as _exc:
    raise ImproperlyConfigured(str(_exc)) from None

# Notifications (Slack, Teams, a signed JSON webhook; docs/notifications.md): channels, event
# filters, the dashboard link, read and checked once, here. Messages never repeat a URL.
from operator_app.notify.settings import NotifyConfigError  # noqa: E402
from operator_app.notify.settings import from_environ as _notify_from_environ  # noqa: E402

try:
    HEADWIND_NOTIFY = _notify_from_environ(os.environ)
except NotifyConfigError as _exc:
    raise ImproperlyConfigured(str(_exc)) from None

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")

CELERY_BROKER_URL = REDIS_URL
CELERY_RESULT_BACKEND = REDIS_URL
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
# Updates must survive a worker crash (docs/reliability.md). The apply task is idempotent, so
# it is acknowledged only after it ran; a message held by a worker that died (kill -9) goes back
# to the queue once it has been unacknowledged for the visibility timeout. Every countdown is
# shorter than that timeout (operator_app.tasks.MAX_COUNTDOWN_SECONDS), or Redis would hand a
# waiting task out a second time. Any live worker sweeps every 5 s for such messages, so an
# update held by a killed worker is applied again within about 65 s.
# The worker's tasks wait on the API server, registries and Redis, so they run on a pool of
# threads in one process (the default here, not prefork: every prefork child is another copy of
# Django and the Kubernetes client). The manifests and the chart say so on the command line too.
CELERY_WORKER_POOL = "threads"
CELERY_WORKER_CONCURRENCY = 4
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_VISIBILITY_TIMEOUT = 60
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": CELERY_BROKER_VISIBILITY_TIMEOUT,
    "unacked_restore_interval": 5,
    "unacked_restore_throttle": 1,
    "unacked_mutex_expire": 30,
    "health_check_interval": 25,
    "socket_keepalive": True,
    "socket_connect_timeout": 5,
    "socket_timeout": 30,
}
# Ride out a broker outage of any length instead of exiting after ~46 minutes of retries.
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_CONNECTION_MAX_RETRIES = None
CELERY_BROKER_CHANNEL_ERROR_RETRY = True
CELERY_RESULT_BACKEND_ALWAYS_RETRY = True
CELERY_RESULT_BACKEND_MAX_RETRIES = 30
CELERY_REDIS_BACKEND_HEALTH_CHECK_INTERVAL = 25
CELERY_REDIS_SOCKET_KEEPALIVE = True

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": [REDIS_URL]},
    }
}

# Kubernetes: KUBECONFIG (or ~/.kube/config) first, then the in-cluster service account.
KUBECONFIG = os.environ.get("KUBECONFIG", "")
KUBE_CONTEXT = os.environ.get("HEADWIND_KUBE_CONTEXT", "")
HEADWIND_NAMESPACE = os.environ.get("HEADWIND_NAMESPACE", "headwind-system")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "filters": {"redact": {"()": "headwind_site.redact.RedactWebhookTokens"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain",
                             "filters": ["redact"]}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {"kubernetes": {"level": "WARNING"}, "urllib3": {"level": "WARNING"}},
}

# --- The dashboard's htmx, CSS and JS are served by Headwind itself (no CDN, no extra server) ---
MIDDLEWARE.insert(MIDDLEWARE.index("django.middleware.security.SecurityMiddleware") + 1,
                  "approvals.staticfiles.StaticFilesMiddleware")  # WhiteNoise
WHITENOISE_USE_FINDERS = True  # straight from the apps' static/ folders; collectstatic optional
