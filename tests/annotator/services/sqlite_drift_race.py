"""A drift check racing production pushes on the embedded SQLite default, in a process of its own.

pytest runs the suite on PostgreSQL, and a settings change cannot move a running Django process to another
database, so ``test_races_drift_noise`` runs this module as a subprocess with ``DATABASE_URL`` unset and
``DATA_DIR`` in a temporary folder: the settings of ``make demo`` (SQLite in WAL mode, IMMEDIATE
transactions). The one change is ``busy_timeout``, cut from 10 s to 2 s so the race takes seconds: a writer
still waits for the lock, just not as long. The serving model is a stand-in whose drift-check predictions
take ``PREDICT_SECONDS`` a window (pushes predict at once), so the check spends seconds in inference while
pushes arrive.

Prints one JSON object: the errors the pushes and checks raised, the pushes that succeeded, and the windows
recorded (sequence, first and last example id).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

NAMES = ["positive", "negative", "neutral"]
WINDOW = 10
PREDICT_SECONDS = 0.8
BUSY_TIMEOUT_MS = 2000
PUSHERS = 3
PUSHES_EACH = 4


@dataclass
class Prediction:
    probs: np.ndarray
    embeddings: np.ndarray
    token_stats: Any
    labels: list[str]


class SlowPredictor:
    """The serving model: instant for pushes, ``PREDICT_SECONDS`` per drift-check window."""

    label_names = NAMES

    def __init__(self) -> None:
        self.checking = threading.Event()  # set once a drift check is in inference

    def predict(self, texts: list[str], with_token_stats: bool = True, cache: Any = None) -> Prediction:
        if with_token_stats:  # only drift checks ask for token statistics
            self.checking.set()
            time.sleep(PREDICT_SECONDS)
        rng = np.random.default_rng(len(texts))
        probs = np.full((len(texts), 3), 0.05)
        probs[np.arange(len(texts)), rng.integers(0, 2, size=len(texts))] = 0.9
        return Prediction(probs, rng.normal(size=(len(texts), 8)), None, [NAMES[int(p.argmax())] for p in probs])


def main(scenario: str) -> dict[str, Any]:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "annotator.settings")
    from django.conf import settings

    options = settings.DATABASES["default"]["OPTIONS"]
    assert settings.DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3", "run with DATABASE_URL unset"
    assert "busy_timeout=10000" in options["init_command"], "the settings' busy_timeout changed: update this test"
    options["init_command"] = options["init_command"].replace("busy_timeout=10000", f"busy_timeout={BUSY_TIMEOUT_MS}")

    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection

    from annotator import dispatch
    from annotator.models import DriftWindow, ModelVersion, Project
    from annotator.services import production
    from annotator.services.drift_reference import ChosenReference
    from annotator.services.projects import project_create
    from training.drift_reference import build_drift_reference

    call_command("migrate", verbosity=0)
    user = get_user_model().objects.create_user(username="feed", password="not-used-here-1")
    project = project_create(user=user, name="Live", task="single_label", labels=NAMES,
                             settings={"drift_window_size": WINDOW})
    version = ModelVersion.objects.create(project=project, number=1, status=ModelVersion.Status.READY)
    Project.objects.filter(pk=project.pk).update(serving_version=version)
    project.refresh_from_db()

    predictor = SlowPredictor()
    rng = np.random.default_rng(0)
    reference = build_drift_reference(probs=rng.dirichlet(np.ones(3), size=40), label_names=NAMES,
                                      embeddings=rng.normal(size=(40, 8)))
    production.predictor_for = lambda _version: predictor
    production.drift_reference_for = lambda version: ChosenReference(reference, {"kind": "pool", "summary": "test"})
    dispatch.send_after_commit = lambda *_args: None  # no broker here: the checks run in threads below

    # Five full windows wait before the check starts.
    production.samples_push(project=project, user=user,
                            rows=[{"external_id": f"seed-{i}", "text": f"live sample {i}"} for i in range(5 * WINDOW)])
    connection.close()

    errors: list[str] = []
    pushed: list[int] = []
    lock = threading.Lock()

    def record(kind: str, error: Exception) -> None:
        with lock:
            errors.append(f"{kind}: {type(error).__name__}: {error}")

    def check() -> None:
        try:
            production.drift_check(project.id)
        except Exception as error:  # noqa: BLE001 - reported to the test
            record("drift check", error)
        finally:
            connection.close()

    def push(n: int) -> None:
        predictor.checking.wait(30)
        try:
            for k in range(PUSHES_EACH):
                rows = [{"external_id": f"p{n}-{k}-{j}", "text": f"pushed sample {n} {k} {j}"} for j in range(3)]
                production.samples_push(project=Project.objects.get(pk=project.pk), user=user, rows=rows)
                with lock:
                    pushed.append(1)
                time.sleep(0.1)
        except Exception as error:  # noqa: BLE001 - reported to the test
            record("push", error)
        finally:
            connection.close()

    checkers = 2 if scenario == "two_checks" else 1
    threads = [threading.Thread(target=check) for _ in range(checkers)]
    if scenario == "pushes":
        threads += [threading.Thread(target=push, args=(n,)) for n in range(PUSHERS)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    windows = list(DriftWindow.objects.filter(project=project).order_by("sequence")
                   .values_list("sequence", "first_example_id", "last_example_id"))
    return {"errors": errors, "pushes": len(pushed), "pushes_expected": PUSHERS * PUSHES_EACH if scenario == "pushes"
            else 0, "windows": windows, "seconds": round(time.monotonic() - started, 2)}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1] if len(sys.argv) > 1 else "pushes")))
