"""The click paths (lease, answer, skip, renew) through the API on the embedded SQLite default, in a process of
its own.

They are written as SQL (annotator/db.py) that must run on SQLite too, where ``make demo`` serves them;
pytest runs the suite on PostgreSQL and a running Django process cannot move to another database, so
``test_click_queries`` runs this module as a subprocess with ``DATABASE_URL`` unset and ``DATA_DIR`` in a
temporary folder. Prints one JSON object: what each step answered.
"""

from __future__ import annotations

import json
import os
from typing import Any

LABELS = ["positive", "negative", "neutral"]


def main() -> dict[str, Any]:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "annotator.settings")
    import django

    django.setup()
    from django.conf import settings

    assert settings.DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3", "run with DATABASE_URL unset"
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIClient

    from annotator.models import Example, ExampleScore, ModelVersion, QueueItem
    from annotator.services.examples import examples_import
    from annotator.services.projects import member_set, project_create
    from annotator.services.queue import queue_add

    call_command("migrate", verbosity=0)
    users = {name: get_user_model().objects.create_user(username=name, password="not-used-here-1")
             for name in ("alice", "anna", "bob", "oscar")}
    clients = {}
    for name, user in users.items():
        clients[name] = APIClient()
        clients[name].credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")

    def project_with_queue(title: str, settings: dict[str, Any]) -> Any:
        project = project_create(user=users["alice"], name=title, task="single_label", labels=LABELS,
                                 settings=settings)
        for name in ("anna", "bob"):
            member_set(project=project, username=name, role="annotator")
        ids = examples_import(project=project, user=users["alice"], rows=[
            {"text": f"{title} text {i}", "external_id": f"{title}-{i}", "metadata": {"row": i}} for i in range(6)]).ids
        for i, pk in enumerate(ids):
            queue_add(project=project, examples=[pk], reason="uncertain" if i % 2 else "random",
                      priority=10.0 - i, explanation=f"item {i}")
        return project, ids

    project, ids = project_with_queue("single", {"queue_mix": {"uncertain": 0.5, "suspect": 0.0, "drift": 0.0,
                                                               "random": 0.5}})
    version = ModelVersion.objects.create(project=project, number=1, status=ModelVersion.Status.READY)
    score = ExampleScore.objects.create(example_id=ids[0], model_version=version, probs=[0.7, 0.2, 0.1],
                                        predicted=["positive"], confidence=0.7, entropy=0.8, margin=0.5)
    Example.objects.filter(pk=ids[0]).update(latest_score=score)

    def call(who: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        response = getattr(clients[who], method)(path, body, format="json")
        return response.status_code, response.json() if response.content else None

    base = f"/api/v1/projects/{project.id}"
    out: dict[str, Any] = {"ids": ids}
    out["anna_first"] = call("anna", "get", f"{base}/queue/next/?n=2")
    out["anna_again"] = call("anna", "get", f"{base}/queue/next/?n=2")
    out["bob"] = call("bob", "get", f"{base}/queue/next/?n=10")
    out["oscar"] = call("oscar", "get", f"{base}/queue/next/?n=1")
    out["anna_n_0"] = call("anna", "get", f"{base}/queue/next/?n=0")
    out["anna_n_word"] = call("anna", "get", f"{base}/queue/next/?n=many")
    first, second = (item["id"] for item in out["anna_first"][1])
    out["bob_answers_annas"] = call("bob", "post", f"/api/v1/queue/{first}/submit/", {"label": "negative"})
    out["anna_unknown_label"] = call("anna", "post", f"/api/v1/queue/{first}/submit/", {"label": "great"})
    out["anna_answers"] = call("anna", "post", f"/api/v1/queue/{first}/submit/", {"label": "negative"})
    out["anna_answers_twice"] = call("anna", "post", f"/api/v1/queue/{first}/submit/", {"label": "negative"})
    out["oscar_answers"] = call("oscar", "post", f"/api/v1/queue/{second}/submit/", {"label": "negative"})
    out["anna_renews"] = call("anna", "post", f"/api/v1/queue/{second}/heartbeat/")
    out["anna_skips"] = call("anna", "post", f"/api/v1/queue/{second}/skip/")
    out["anna_after_skip"] = call("anna", "get", f"{base}/queue/next/?n=1")
    first_example = QueueItem.objects.get(pk=first).example_id
    out["current_label"] = list(Example.objects.get(pk=first_example).labels.values_list("name", flat=True))
    out["label_source"] = Example.objects.get(pk=first_example).label_source
    out["statuses"] = {str(item.id): [item.status, item.leased_by_id and item.leased_by.username]
                       for item in QueueItem.objects.filter(project=project)}

    # With overlap 2, an annotator never gets the second slot of an example they hold or answered.
    overlap, _ = project_with_queue("overlap", {"overlap": 2})
    obase = f"/api/v1/projects/{overlap.id}"
    leased = call("anna", "get", f"{obase}/queue/next/?n=3")
    out["overlap_first"] = leased
    for item in leased[1]:
        call("anna", "post", f"/api/v1/queue/{item['id']}/submit/", {"label": "positive"})
    out["overlap_second"] = call("anna", "get", f"{obase}/queue/next/?n=10")
    out["overlap_bob"] = call("bob", "get", f"{obase}/queue/next/?n=10")
    return out


if __name__ == "__main__":
    print(json.dumps(main()))
