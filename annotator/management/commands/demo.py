"""``make demo``: the whole product on the embedded default, in one command.

Migrates, starts the embedded Redis (unless REDIS_URL points elsewhere), creates the demo admin, loads the
BBC news demo project, then runs a Celery worker (with the beat that sends the periodic job sweep embedded,
``-B``: one process is enough for the demo) and the web server until Ctrl-C.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import threading
import time

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand

from annotator import embedded_redis
from annotator.services.demo import demo_project_load


class Command(BaseCommand):
    help = "Set up and run the demo: embedded Redis, web server, Celery worker and beat, demo data."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--host", default=os.environ.get("DEMO_HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("DEMO_PORT", 8000)))
        parser.add_argument("--setup-only", action="store_true", help="prepare everything, run nothing")
        parser.add_argument("--no-traffic", action="store_true", help="do not play demo production traffic")

    def handle(self, *args, **options) -> None:
        settings.DATA_DIR.mkdir(parents=True, exist_ok=True)
        children: list[subprocess.Popen] = []
        signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
        try:
            self._run(children, options)
        except KeyboardInterrupt:
            pass
        finally:
            self._stop(children)

    def _run(self, children: list[subprocess.Popen], options: dict) -> None:
        if "REDIS_URL" not in os.environ:
            redis_process = embedded_redis.start(settings.EMBEDDED_REDIS_PORT, settings.DATA_DIR)
            if redis_process:
                children.append(redis_process)
            self.stdout.write(f"Redis: embedded, 127.0.0.1:{settings.EMBEDDED_REDIS_PORT}")
        call_command("migrate", verbosity=0)
        username, password = self._admin()
        data = demo_project_load(user=get_user_model().objects.get(username=username))
        self.stdout.write(f"Demo project {data.project.id}: {data.project.name}")
        self.stdout.write(f"  {len(data.flipped)} seed labels are deliberately wrong (see docs/demo.md)")
        if options["setup_only"]:
            return
        children.append(subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "annotator", "worker", "-Q", "default,training,scoring",
             "--concurrency", "1", "--loglevel", "INFO", "--beat"],
        ))
        children.append(subprocess.Popen(
            [sys.executable, "manage.py", "runserver", "--noreload", f"{options['host']}:{options['port']}"],
            cwd=settings.BASE_DIR,
        ))
        job = self._start_first_training(data.project)
        if job is not None and not options["no_traffic"]:
            threading.Thread(target=self._play_traffic, args=(data, job.id), daemon=True).start()
        url = f"http://{options['host']}:{options['port']}/"
        self.stdout.write(self.style.SUCCESS(
            f"\nRelabel is running at {url}\n  log in as {username} / {password}\n"
            f"  API docs: {url}api/docs/   (Ctrl-C stops everything)\n"
        ))
        while all(child.poll() is None for child in children):
            time.sleep(1)
        self.stderr.write("a demo process exited; stopping the rest")

    def _play_traffic(self, data, job_id: int) -> None:  # noqa: ANN001
        """Once the first model serves, push the held-back articles as production traffic, a window at a
        time, so the drift page fills (the last windows are shifted on purpose)."""
        from annotator.models import Job
        from annotator.services.demo import demo_traffic
        from annotator.services.production import samples_push

        while Job.objects.filter(pk=job_id).exclude(status__in=Job.FINISHED).exists():
            time.sleep(5)
        if not Job.objects.filter(pk=job_id, status=Job.Status.SUCCEEDED).exists():
            return
        user = get_user_model().objects.get(pk=data.project.created_by_id)
        for batch in demo_traffic(held_back=data.held_back, window=int(data.project.setting("drift_window_size"))):
            samples_push(project=data.project, user=user, rows=batch)
            time.sleep(10)
        self.stdout.write("Demo production traffic pushed; see the drift page.")

    def _start_first_training(self, project):  # noqa: ANN001, ANN202
        """Train the first model (the worker picks it up), so the queue and the noise report fill."""
        from annotator.errors import Conflict
        from annotator.models import ModelVersion
        from annotator.services.models import training_start

        if ModelVersion.objects.filter(project=project, status=ModelVersion.Status.READY).exists():
            return None
        try:
            job = training_start(project=project, user=None, reason="demo: first model")
        except Conflict:
            return None
        self.stdout.write(f"Training the first model (job {job.id}); the overview page shows its progress.")
        return job

    def _admin(self) -> tuple[str, str]:
        """The demo admin; its password comes from DEMO_PASSWORD or is made once and kept in DATA_DIR."""
        username = os.environ.get("DEMO_USERNAME", "demo")
        secret_file = settings.DATA_DIR / "demo-password.txt"
        password = os.environ.get("DEMO_PASSWORD") or (
            secret_file.read_text().strip() if secret_file.exists() else secrets.token_urlsafe(12)
        )
        secret_file.write_text(password + "\n")
        secret_file.chmod(0o600)
        model = get_user_model()
        user = model.objects.filter(username=username).first()
        if user is None:
            user = model.objects.create_superuser(username=username, password=password, email="")
        elif not user.check_password(password):
            user.set_password(password)
            user.save(update_fields=["password"])
        return username, password

    def _stop(self, children: list[subprocess.Popen]) -> None:
        for child in reversed(children):
            if child.poll() is None:
                child.terminate()
        for child in children:
            try:
                child.wait(timeout=15)
            except subprocess.TimeoutExpired:
                child.kill()
