"""The three servers bench/labelstudio.py drives: ours (gunicorn + PostgreSQL), Label Studio under gunicorn +
PostgreSQL, and Label Studio as it ships (``label-studio start``: Django's development server on SQLite).

Clicks (next, submit) go through :func:`call`, which opens a new TCP connection for every request and closes
it (``Connection: close``), as a browser behind a proxy often does; http.client rather than requests, so that
the client spends little of the two cores the servers share with it. Imports and exports, timed in seconds,
use requests.
"""

from __future__ import annotations

import http.client
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
import psycopg
import requests

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from training.data import BBC_LABELS  # noqa: E402

LS_VERSION = "1.23.2"
GUNICORN_VERSION = "27.0.1"  # the version in our own virtualenv, so both run the same HTTP server
VENV = ROOT / "var" / "labelstudio-venv"
LS_USER, LS_PASSWORD = "bench@example.com", "bench-password-1"
LS_TOKEN = "lsbench0123456789abcdef0123456789abcdef"  # legacy tokens are at most 40 characters
LABELS = list(BBC_LABELS)
LABEL_CONFIG = (
    '<View><Text name="text" value="$text"/><Choices name="label" toName="text" choice="single">'
    + "".join(f'<Choice value="{name}"/>' for name in LABELS) + "</Choices></View>"
)


class Refused(RuntimeError):
    """A click the server did not answer with the expected status."""


def call(base: str, method: str, path: str, *, token: str, body: Any = None, expect: int = 200) -> Any:
    """One request on a fresh connection; the decoded JSON answer, or Refused."""
    parts = urlsplit(base)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=600)
    headers = {"Authorization": f"Token {token}", "Connection": "close", "Accept": "application/json"}
    data = None
    if body is not None:
        data = orjson.dumps(body)
        headers["Content-Type"] = "application/json"
    try:
        conn.request(method, path, body=data, headers=headers)
        response = conn.getresponse()
        payload = response.read()
    finally:
        conn.close()
    if response.status != expect:
        raise Refused(f"{method} {path}: {response.status} {payload[:300]!r}")
    return orjson.loads(payload)


def recreate_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def ensure_venv() -> str:
    """The Label Studio virtualenv, created and filled from PyPI when missing or at another version."""
    python = VENV / "bin" / "python"

    def installed() -> str | None:
        if not python.exists():
            return None
        probe = subprocess.run([str(python), "-c", "import importlib.metadata as m; print(m.version('label-studio'), "
                                "m.version('gunicorn'))"], capture_output=True, text=True)
        return probe.stdout.strip() if probe.returncode == 0 else None

    if installed() != f"{LS_VERSION} {GUNICORN_VERSION}":
        if not python.exists():
            print(f"creating {VENV}", flush=True)
            subprocess.run(["python3.11", "-m", "venv", str(VENV)], check=True)
        print(f"installing label-studio=={LS_VERSION} into {VENV} (many packages, minutes)", flush=True)
        subprocess.run([str(VENV / "bin" / "pip"), "install", "-q", f"label-studio=={LS_VERSION}",
                        f"gunicorn=={GUNICORN_VERSION}"], check=True)
    version = installed()
    if version != f"{LS_VERSION} {GUNICORN_VERSION}":
        raise RuntimeError(f"{VENV} holds label-studio/gunicorn {version!r}, expected {LS_VERSION} {GUNICORN_VERSION}")
    return LS_VERSION


def wait_ready(url: str, process: subprocess.Popen, what: str, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode} while starting")
        try:
            if requests.get(url, timeout=5).ok:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{what} did not answer {url} within {timeout} s")


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class Ours:
    name = "ours"

    def __init__(self, *, port: int, workers: int, database_url: str, redis_url: str, max_request_bytes: int) -> None:
        self.base = f"http://127.0.0.1:{port}"
        recreate_database(database_url)
        artifacts = ROOT / "var" / "bench-labelstudio-artifacts"
        shutil.rmtree(artifacts, ignore_errors=True)
        env = {**os.environ, "DATABASE_URL": database_url, "DEBUG": "0", "SECRET_KEY": "bench-only",
               "LOG_LEVEL": "WARNING", "REDIS_URL": redis_url, "ARTIFACT_DIR": str(artifacts),
               "MAX_REQUEST_BYTES": str(max_request_bytes), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
               "WEB_CONCURRENCY": str(workers)}
        os.environ.update({k: env[k] for k in ("DATABASE_URL", "DEBUG", "SECRET_KEY", "REDIS_URL", "ARTIFACT_DIR")})
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "annotator.settings")
        subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
        import django

        django.setup()
        from django.contrib.auth import get_user_model

        get_user_model().objects.create_superuser("bench", "", "bench-password")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "annotator.wsgi", "-b", f"127.0.0.1:{port}", "--timeout", "600",
             "--log-level", "warning"], cwd=ROOT, env=env)
        wait_ready(f"{self.base}/api/v1/health/", self.process, "our gunicorn")
        self.session = requests.Session()
        self.token = self.session.post(f"{self.base}/api/v1/auth/token/",
                                       json={"username": "bench", "password": "bench-password"}).json()["token"]
        self.session.headers["Authorization"] = f"Token {self.token}"
        r = self.session.post(f"{self.base}/api/v1/projects/", json={"name": "side by side", "task": "single_label",
                                                                      "labels": LABELS,
                                                                      "settings": {"max_text_chars": 100_000}})
        assert r.status_code == 201, r.text[:300]
        self.project = r.json()["id"]
        self.warm_path = "/api/v1/projects/"

    def annotator_tokens(self, k: int) -> list[str]:
        """k annotators of the project, each with an API token (concurrent clients lease as different people)."""
        from django.contrib.auth import get_user_model
        from rest_framework.authtoken.models import Token

        from annotator.models import Project
        from annotator.services.projects import member_set

        project = Project.objects.get(pk=self.project)
        tokens = []
        for i in range(k):
            user = get_user_model().objects.create_user(f"annotator-{i}", password="bench-password")
            member_set(project=project, username=user.username, role="annotator")
            tokens.append(Token.objects.create(user=user).key)
        return tokens

    def import_body(self, rows: list[tuple[str, str, str]]) -> bytes:
        return orjson.dumps([{"text": text, "external_id": ext} for ext, text, _ in rows])

    def import_batch(self, body: bytes) -> int:
        r = self.session.post(f"{self.base}/api/v1/projects/{self.project}/examples/", data=body,
                              headers={"Content-Type": "application/json"}, timeout=600)
        assert r.status_code == 201, r.text[:300]
        return r.json()["created"]

    def fill_queue(self) -> int:
        """Every imported example into the queue through the service layer (what a rebuild would do)."""
        from annotator.models import Example, Project
        from annotator.services.queue import queue_add

        project = Project.objects.get(pk=self.project)
        ids = list(Example.objects.filter(project=project).values_list("id", flat=True))
        return queue_add(project=project, examples=ids, reason="random", priority=0.5)

    def next(self, token: str) -> tuple[int, str]:
        items = call(self.base, "GET", f"/api/v1/projects/{self.project}/queue/next/?n=1", token=token)
        if not items:
            raise Refused("the queue is empty")
        return items[0]["id"], items[0]["example"]["text"]

    def submit(self, token: str, item: int, label: str) -> None:
        call(self.base, "POST", f"/api/v1/queue/{item}/submit/", token=token, body={"label": label}, expect=201)

    def export(self) -> bytes:
        with self.session.get(f"{self.base}/api/v1/projects/{self.project}/export/", params={"format": "jsonl"},
                              stream=True, timeout=600) as r:
            assert r.status_code == 200, r.text[:300]
            return b"".join(r.iter_content(chunk_size=1 << 20))

    @staticmethod
    def check_export(body: bytes) -> tuple[int, dict[str, str]]:
        rows = [orjson.loads(line) for line in body.splitlines() if line.strip()]
        return len(rows), {row["external_id"]: row["label"] for row in rows if row.get("label")}

    def close(self) -> None:
        stop(self.process)


# Run inside Label Studio's virtualenv: k users in its organization, each with an API token.
_LS_USERS = """
import sys, django
django.setup()
from organizations.models import Organization
from users.models import User
org = Organization.objects.first()
for i in range(int(sys.argv[1])):
    user = User.objects.create_user(email=f"annotator-{i}@example.com", password="bench-password-1")
    org.add_user(user)
    user.active_organization = org
    user.save(update_fields=["active_organization"])
    print(user.auth_token.key)
"""


class LabelStudio:
    """Label Studio served like ours: gunicorn (same version, same worker count), PostgreSQL, DEBUG off."""

    name = "Label Studio, gunicorn + PostgreSQL"
    key = "ls_gunicorn_pg"

    def __init__(self, *, port: int, workers: int, database_url: str) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.data = ROOT / "var" / "labelstudio-data"
        recreate_database(database_url)
        db = urlsplit(database_url)
        self.env = self._env() | {
            "DJANGO_DB": "default", "POSTGRE_NAME": db.path.lstrip("/"), "POSTGRE_USER": db.username or "postgres",
            "POSTGRE_PASSWORD": db.password or "", "POSTGRE_HOST": db.hostname or "127.0.0.1",
            "POSTGRE_PORT": str(db.port or 5432), "DEBUG": "false", "LOG_LEVEL": "WARNING"}
        t0 = time.perf_counter()
        init = subprocess.run(
            [str(VENV / "bin" / "label-studio"), "init", "--username", LS_USER, "--password", LS_PASSWORD,
             "--user-token", LS_TOKEN, "--enable-legacy-api-token", "--quiet"],
            env=self.env, cwd=self.data, capture_output=True, text=True)
        if init.returncode != 0:
            raise RuntimeError(f"label-studio init failed:\n{init.stdout[-2000:]}\n{init.stderr[-3000:]}")
        self.init_s = time.perf_counter() - t0
        package = VENV / "lib" / "python3.11" / "site-packages" / "label_studio"
        self.log = open(ROOT / "var" / "labelstudio-gunicorn.log", "w")  # noqa: SIM115 - closed in close()
        self.process = subprocess.Popen(
            [str(VENV / "bin" / "gunicorn"), "--pythonpath", str(package), "label_studio.core.wsgi:application",
             "-b", f"127.0.0.1:{port}", "-w", str(workers), "--timeout", "600", "--log-level", "warning"],
            env=self.env, cwd=self.data, stdout=self.log, stderr=subprocess.STDOUT)
        self.started()

    def _env(self) -> dict[str, str]:
        """A clean environment (Label Studio reads unprefixed names too: DEBUG, HOST, PORT, ...) and a fresh
        data directory."""
        shutil.rmtree(self.data, ignore_errors=True)
        self.data.mkdir(parents=True)
        return {"PATH": f"{VENV / 'bin'}:/usr/bin:/bin", "HOME": os.environ.get("HOME", "/root"),
                "LABEL_STUDIO_BASE_DATA_DIR": str(self.data), "SENTRY_DSN": "", "FRONTEND_SENTRY_DSN": "",
                "DJANGO_SETTINGS_MODULE": "label_studio.core.settings.label_studio"}

    def started(self) -> None:
        wait_ready(f"{self.base}/health", self.process, self.name)
        self.token = LS_TOKEN
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Token {LS_TOKEN}"
        r = self.session.post(f"{self.base}/api/projects/", json={"title": "side by side", "label_config": LABEL_CONFIG})
        assert r.status_code == 201, r.text[:300]
        self.project = r.json()["id"]
        self.warm_path = "/api/projects/"

    def annotator_tokens(self, k: int) -> list[str]:
        package = VENV / "lib" / "python3.11" / "site-packages" / "label_studio"
        made = subprocess.run([str(VENV / "bin" / "python"), "-c", _LS_USERS, str(k)], env=self.env, cwd=package,
                              capture_output=True, text=True)
        if made.returncode != 0:
            raise RuntimeError(f"creating Label Studio users failed:\n{made.stderr[-3000:]}")
        return made.stdout.split()[-k:]

    def import_body(self, rows: list[tuple[str, str, str]]) -> bytes:
        return orjson.dumps([{"data": {"text": text, "external_id": ext}} for ext, text, _ in rows])

    def import_batch(self, body: bytes) -> int:
        r = self.session.post(f"{self.base}/api/projects/{self.project}/import", data=body,
                              headers={"Content-Type": "application/json"}, timeout=600)
        assert r.status_code == 201, r.text[:300]
        return r.json()["task_count"]

    def next(self, token: str) -> tuple[int, str]:
        task = call(self.base, "GET", f"/api/projects/{self.project}/next", token=token)
        return task["id"], task["data"]["text"]

    def submit(self, token: str, item: int, label: str) -> None:
        call(self.base, "POST", f"/api/tasks/{item}/annotations/", token=token, expect=201, body={
            "result": [{"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": [label]}}],
            "lead_time": 1.0})

    def export(self) -> bytes:
        with self.session.get(f"{self.base}/api/projects/{self.project}/export",
                              params={"exportType": "JSON", "download_all_tasks": "true"}, stream=True,
                              timeout=900) as r:
            assert r.status_code == 200, r.text[:300]
            return b"".join(r.iter_content(chunk_size=1 << 20))

    @staticmethod
    def check_export(body: bytes) -> tuple[int, dict[str, str]]:
        tasks = orjson.loads(body)
        labeled = {}
        for task in tasks:
            results = [res for ann in task.get("annotations", []) for res in ann.get("result", [])]
            if results:
                labeled[task["data"]["external_id"]] = results[-1]["value"]["choices"][0]
        return len(tasks), labeled

    def close(self) -> None:
        stop(self.process)
        self.log.close()


class LabelStudioShipped(LabelStudio):
    """Label Studio as it ships: ``label-studio start`` with its defaults (Django's development server, one
    process with a thread per request, SQLite under the data directory), log level WARNING."""

    name = "Label Studio as shipped (label-studio start, SQLite)"
    key = "ls_shipped_sqlite"

    def __init__(self, *, port: int) -> None:  # noqa: D107 - no super().__init__: nothing of gunicorn or PostgreSQL
        self.base = f"http://127.0.0.1:{port}"
        self.data = ROOT / "var" / "labelstudio-data-sqlite"
        self.env = self._env()
        self.log = open(ROOT / "var" / "labelstudio-start.log", "w")  # noqa: SIM115 - closed in close()
        t0 = time.perf_counter()
        # start migrates the new SQLite database, creates the user, then serves.
        self.process = subprocess.Popen(
            [str(VENV / "bin" / "label-studio"), "start", "--no-browser", "--internal-host", "127.0.0.1",
             "--port", str(port), "--username", LS_USER, "--password", LS_PASSWORD, "--user-token", LS_TOKEN,
             "--enable-legacy-api-token", "--log-level", "WARNING"],
            env=self.env, cwd=self.data, stdout=self.log, stderr=subprocess.STDOUT)
        self.started()
        self.init_s = time.perf_counter() - t0
