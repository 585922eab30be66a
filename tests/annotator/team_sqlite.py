"""The team report on the embedded SQLite default, in a process of its own (pytest runs the suite on
PostgreSQL, and a running Django process cannot move to another database): SQLite has no percentile_cont, so
the median time per item takes the other path. Prints one JSON object with the numbers to check."""

from __future__ import annotations

import json
import os
import sys
from typing import Any


def main() -> dict[str, Any]:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "annotator.settings")
    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from annotator.selectors.team import team_report
    from annotator.services.projects import member_set, project_create
    from tests.annotator import team_rows

    assert settings.DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3", "run with DATABASE_URL unset"
    call_command("migrate", verbosity=0)
    users = get_user_model().objects
    alice, rita, _ = (users.create_user(username=name, password="not-used-here-1")
                      for name in ("alice", "rita", "anna"))
    project = project_create(user=alice, name="Team", task="single_label",
                             labels=["positive", "negative", "neutral"], settings=None)
    member_set(project=project, username="rita", role="reviewer")
    member_set(project=project, username="anna", role="annotator")
    team_rows.build_team(project, alice, rita,
                         lambda name: users.create_user(username=name, password="not-used-here-1"))
    report = team_report(project)
    return {
        "fleiss_kappa": report["fleiss_kappa"],
        "median_seconds": {row["username"]: row["median_seconds"] for row in report["annotators"]},
        "changed": {row["username"]: row["changed_by_review"] for row in report["annotators"]},
    }


if __name__ == "__main__":
    print(json.dumps(main()))
    sys.exit(0)
