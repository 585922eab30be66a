"""Production settings: secrets only from the environment, HTTPS by default once served to the network,
and ``manage.py check --deploy`` clean.

The settings module is evaluated afresh under a given environment (``runpy``), so each combination is
checked without a new process; ``check --deploy`` and the failing start run as real ``manage.py``
subprocesses, as an operator would run them.
"""

from __future__ import annotations

import ast
import os
import re
import runpy
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import Client

from tests.annotator.conftest import PASSWORD

ROOT = Path(__file__).resolve().parents[3]
SETTINGS = ROOT / "annotator" / "settings.py"
# Every variable the settings read that could change the answers below: each test starts without them.
SETTINGS_ENV = ("DEBUG", "SECRET_KEY", "ALLOWED_HOSTS", "SECURE_SSL_REDIRECT", "SECURE_COOKIES",
                "SECURE_HSTS_SECONDS", "SECURE_HSTS_INCLUDE_SUBDOMAINS", "SECURE_HSTS_PRELOAD",
                "BEHIND_HTTPS_PROXY", "NUM_PROXIES", "THROTTLE_AUTH", "THROTTLE_PUSH", "CSRF_TRUSTED_ORIGINS")
STRONG_KEY = secrets.token_urlsafe(50)
PUBLIC_HOST = "relabel.example.com"


def load(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, **env: str) -> dict[str, Any]:
    """The settings module's names under exactly this environment."""
    for name in SETTINGS_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(SETTINGS))


def manage(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    # DJANGO_ALLOW_ASYNC_UNSAFE is set by the browser tests' harness (Playwright's loop in the test thread),
    # never in a deployment: check --deploy rightly reports it (async.E001), so it is not passed on.
    harness = {"DATABASE_URL", "DJANGO_ALLOW_ASYNC_UNSAFE"}
    clean = {k: v for k, v in os.environ.items() if k not in SETTINGS_ENV and k not in harness}
    clean.update(DATA_DIR=str(tmp_path), **env)
    return subprocess.run([sys.executable, str(ROOT / "manage.py"), *args], cwd=ROOT, env=clean,
                          capture_output=True, text=True, timeout=120)


# --- secrets ------------------------------------------------------------------------------------------------
def test_without_debug_a_missing_secret_key_stops_the_start(monkeypatch, tmp_path):
    with pytest.raises(ImproperlyConfigured, match="SECRET_KEY"):
        load(monkeypatch, tmp_path, DEBUG="0")
    with pytest.raises(ImproperlyConfigured, match="SECRET_KEY"):
        load(monkeypatch, tmp_path, DEBUG="0", SECRET_KEY="   ")
    with pytest.raises(ImproperlyConfigured, match="SECRET_KEY"):
        load(monkeypatch, tmp_path)  # DEBUG defaults to off


def test_manage_py_without_a_secret_key_fails_loudly(tmp_path):
    result = manage(tmp_path, "check", DEBUG="0")

    assert result.returncode != 0
    assert "ImproperlyConfigured: SECRET_KEY must be set" in result.stderr


def test_the_secret_key_is_the_environments(monkeypatch, tmp_path):
    assert load(monkeypatch, tmp_path, DEBUG="0", SECRET_KEY=STRONG_KEY)["SECRET_KEY"] == STRONG_KEY


def test_debug_still_starts_without_a_secret_key(monkeypatch, tmp_path):
    """``make demo`` runs DEBUG=1 with no SECRET_KEY over plain http on localhost."""
    dev = load(monkeypatch, tmp_path, DEBUG="1")

    assert dev["DEBUG"] is True and dev["SECRET_KEY"]
    assert not dev.get("SECURE_SSL_REDIRECT") and not dev.get("SESSION_COOKIE_SECURE")
    assert not dev.get("SECURE_HSTS_SECONDS")


def test_the_settings_hold_no_secret_but_the_debug_only_development_key():
    """Every string literal of the settings bound to a secret-sounding name, and every long random-looking
    literal: only the development key, and it sits in the branch that raises unless DEBUG is on."""
    tree = ast.parse(SETTINGS.read_text())
    words = ("SECRET", "PASSWORD", "TOKEN", "KEY", "CREDENTIAL")
    suspicious = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign):
            names = [t.id for t in node.targets if isinstance(t, ast.Name)]
            literal = isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)
            if literal and any(w in n.upper() for n in names for w in words):
                suspicious.append((node.lineno, names, node.value.value))
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and looks_random(node.value):
            suspicious.append((node.lineno, ["<literal>"], node.value))

    assert [(names, text) for _, names, text in suspicious] == [
        (["SECRET_KEY"], "insecure-development-key-not-for-production"),
    ]


def looks_random(text: str) -> bool:
    """A literal of 32+ characters with no spaces that is not a dotted import path and mixes three kinds of character."""
    if len(text) < 32 or any(c.isspace() for c in text) or re.fullmatch(r"[A-Za-z_]\w*(\.[\w*]+)+", text):
        return False
    kinds = [any(c.islower() for c in text), any(c.isupper() for c in text), any(c.isdigit() for c in text),
             any(not c.isalnum() for c in text)]
    return sum(kinds) >= 3


def test_the_random_literal_detector_detects():
    assert looks_random(STRONG_KEY) or looks_random("k8#Qz!vX2@pL9$wR4^tY7&uN1*mB6")
    assert not looks_random("annotator.api.parsers.SafeJSONParser")


def test_the_development_key_is_never_used_without_debug(monkeypatch, tmp_path):
    for env in ({"DEBUG": "0", "SECRET_KEY": STRONG_KEY}, {"DEBUG": "false", "SECRET_KEY": "x" * 60}):
        assert load(monkeypatch, tmp_path, **env)["SECRET_KEY"] != "insecure-development-key-not-for-production"


# --- HTTPS settings ---------------------------------------------------------------------------------------------
def test_served_to_the_network_https_is_the_default(monkeypatch, tmp_path):
    prod = load(monkeypatch, tmp_path, DEBUG="0", SECRET_KEY=STRONG_KEY, ALLOWED_HOSTS=PUBLIC_HOST)

    assert prod["SECURE_SSL_REDIRECT"] is True
    assert prod["SESSION_COOKIE_SECURE"] is True and prod["CSRF_COOKIE_SECURE"] is True
    assert prod["SECURE_HSTS_SECONDS"] >= 365 * 24 * 3600
    assert prod["SECURE_HSTS_INCLUDE_SUBDOMAINS"] is True and prod["SECURE_HSTS_PRELOAD"] is True
    assert prod["SESSION_COOKIE_HTTPONLY"] is True and prod["X_FRAME_OPTIONS"] == "DENY"
    assert prod["SECURE_PROXY_SSL_HEADER"] is None  # X-Forwarded-Proto is trusted only when told so
    assert prod["REST_FRAMEWORK"]["NUM_PROXIES"] == 0


def test_loopback_only_serving_stays_plain_http(monkeypatch, tmp_path):
    """The tests, the benchmarks and a local compose run DEBUG=0 over http on loopback."""
    local = load(monkeypatch, tmp_path, DEBUG="0", SECRET_KEY=STRONG_KEY)

    assert local["ALLOWED_HOSTS"] == ["localhost", "127.0.0.1", "[::1]"]
    assert local["SECURE_SSL_REDIRECT"] is False and local["SESSION_COOKIE_SECURE"] is False
    assert local["SECURE_HSTS_SECONDS"] == 0
    bench = load(monkeypatch, tmp_path, DEBUG="0", SECRET_KEY=STRONG_KEY, ALLOWED_HOSTS="testserver,localhost")
    assert bench["SECURE_SSL_REDIRECT"] is False  # bench/pages.py drives Django's test client this way


def test_each_https_setting_can_be_set_from_the_environment(monkeypatch, tmp_path):
    tuned = load(monkeypatch, tmp_path, DEBUG="0", SECRET_KEY=STRONG_KEY, ALLOWED_HOSTS=PUBLIC_HOST,
                 SECURE_SSL_REDIRECT="0", SECURE_HSTS_SECONDS="3600", SECURE_HSTS_PRELOAD="0",
                 BEHIND_HTTPS_PROXY="1", THROTTLE_AUTH="5/min", THROTTLE_PUSH="100/s")

    assert tuned["SECURE_SSL_REDIRECT"] is False
    assert tuned["SECURE_HSTS_SECONDS"] == 3600 and tuned["SECURE_HSTS_PRELOAD"] is False
    assert tuned["SESSION_COOKIE_SECURE"] is True  # not overridden: still the default
    assert tuned["SECURE_PROXY_SSL_HEADER"] == ("HTTP_X_FORWARDED_PROTO", "https")
    assert tuned["REST_FRAMEWORK"]["NUM_PROXIES"] == 1  # the proxy's X-Forwarded-For entry names the client
    assert tuned["REST_FRAMEWORK"]["DEFAULT_THROTTLE_RATES"] == {"auth": "5/min", "push": "100/s"}


def test_check_deploy_is_clean_under_production_settings(tmp_path):
    result = manage(tmp_path, "check", "--deploy", "--fail-level", "WARNING",
                    DEBUG="0", SECRET_KEY=STRONG_KEY, ALLOWED_HOSTS=PUBLIC_HOST,
                    CSRF_TRUSTED_ORIGINS=f"https://{PUBLIC_HOST}")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout


def test_check_deploy_names_what_is_missing_when_https_is_turned_off(tmp_path):
    """The check is not vacuous: with the HTTPS settings turned off it reports each one."""
    result = manage(tmp_path, "check", "--deploy", "--fail-level", "WARNING",
                    DEBUG="0", SECRET_KEY="short", ALLOWED_HOSTS=PUBLIC_HOST,
                    SECURE_SSL_REDIRECT="0", SECURE_COOKIES="0", SECURE_HSTS_SECONDS="0")

    assert result.returncode != 0
    for warning in ("security.W004", "security.W008", "security.W009", "security.W012", "security.W016"):
        assert warning in result.stderr + result.stdout


@pytest.mark.django_db
def test_the_https_settings_take_effect_on_requests(monkeypatch, tmp_path, settings, make_user):
    """The values the settings compute for a public host, applied to the running app: plain http is sent
    to https (the health check excepted), https answers carry HSTS, and the login cookies are Secure."""
    prod = load(monkeypatch, tmp_path, DEBUG="0", SECRET_KEY=STRONG_KEY, ALLOWED_HOSTS=PUBLIC_HOST)
    for name in ("SECURE_SSL_REDIRECT", "SECURE_REDIRECT_EXEMPT", "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE",
                 "SECURE_HSTS_SECONDS", "SECURE_HSTS_INCLUDE_SUBDOMAINS", "SECURE_HSTS_PRELOAD"):
        setattr(settings, name, prod[name])
    settings.ALLOWED_HOSTS = [PUBLIC_HOST]
    make_user("alice")

    plain = Client(HTTP_HOST=PUBLIC_HOST)
    redirected = plain.get("/api/v1/projects/")
    assert redirected.status_code == 301
    assert redirected["Location"] == f"https://{PUBLIC_HOST}/api/v1/projects/"
    assert plain.get("/api/v1/health/").status_code == 200

    https = Client(HTTP_HOST=PUBLIC_HOST, enforce_csrf_checks=False)
    page = https.get("/login/", secure=True)
    assert page.status_code == 200
    assert page["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains; preload"
    logged_in = https.post("/login/", {"username": "alice", "password": PASSWORD}, secure=True)
    assert logged_in.status_code == 302
    assert logged_in.cookies["sessionid"]["secure"] is True
    assert page.cookies["csrftoken"]["secure"] is True
