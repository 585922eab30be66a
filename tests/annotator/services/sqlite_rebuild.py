"""The bulk rebuild on the embedded SQLite default, in a process of its own (pytest runs on PostgreSQL; see
``sqlite_drift_race`` for why a subprocess): SQLite has no ``sha256()`` (``annotator.db`` registers one per
connection) and takes the bulk_create path of ``queue_add_many``. Builds a small scored pool, then prints one
JSON object: whether the bulk picks equal the old path's, whether the SQL holdout reservation equals the
Python one, and the items written.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

NAMES = ["positive", "negative", "neutral"]


def main() -> dict[str, Any]:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "annotator.settings")
    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    assert settings.DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3", "run with DATABASE_URL unset"
    from annotator.models import Example, ModelVersion
    from annotator.services.examples import examples_import
    from annotator.services.holdout import (
        HOLDOUT_RULE,
        HOLDOUT_SHARE,
        reserved_condition,
        reserved_for_holdout,
    )
    from annotator.services.pool_embeddings import pool_embeddings_save
    from annotator.services.projects import project_create
    from annotator.services.queue import queue_add_many
    from annotator.services.queue_policy import pick_items
    from annotator.services.scoring import save_scores, score_rows
    from tests.annotator.services import queue_policy_before as before

    call_command("migrate", verbosity=0)
    user = get_user_model().objects.create_user(username="lead", password="not-used-here-1")
    project = project_create(user=user, name="Embedded", task="single_label", labels=NAMES)
    labeled = sorted(examples_import(project=project, user=user, rows=[
        {"external_id": f"l{i}", "text": f"labeled {i}", "label": NAMES[i % 3]} for i in range(30)]).ids)
    pool = sorted(examples_import(project=project, user=user, rows=[
        {"external_id": f"u{i}", "text": f"pool {i}"} for i in range(600)]).ids)
    Example.objects.filter(id__in=pool[::20]).update(source="production")
    version = ModelVersion.objects.create(
        project=project, number=1, status=ModelVersion.Status.READY, snapshot={"n_labeled": 100},
        metrics={"macro_f1": 0.8, "holdout": {"rule": dict(HOLDOUT_RULE), "cut": HOLDOUT_SHARE}})
    rng = np.random.default_rng(3)
    for ids in (pool, labeled):
        probs = rng.dirichlet([1.0, 1.0, 1.0], size=len(ids))
        rows = score_rows(version, ids, probs, [NAMES[int(p.argmax())] for p in probs], False)
        for i, row in enumerate(rows):
            if ids is labeled:
                row.is_issue, row.label_quality, row.suggested_label = i % 2 == 0, float(i) / 40, "neutral"
        save_scores(version, rows)
    pool_embeddings_save(version, 0, pool, rng.normal(size=(len(pool), 16)))

    quota = {"uncertain": 40, "suspect": 6, "drift": 5, "random": 150}
    new_picked, new_state = pick_items(project, version, quota)
    old_picked, old_state = before.pick_items(project, version, quota)
    in_sql = set(Example.objects.filter(reserved_condition(HOLDOUT_SHARE, "id")).values_list("id", flat=True))
    in_python = {pk for pk, keep in zip(pool + labeled, reserved_for_holdout(pool + labeled, HOLDOUT_SHARE),
                                        strict=True) if keep}
    created = {reason: queue_add_many(project=project, reason=reason, items=items, model_version_id=version.id)
               for reason, items in new_picked.items()}
    return {"same": new_picked == old_picked and new_state == old_state, "reserved_same": in_sql == in_python,
            "n_reserved": len(in_python), "picked": {reason: len(items) for reason, items in new_picked.items()},
            "created": created}


if __name__ == "__main__":
    print(json.dumps(main()))
