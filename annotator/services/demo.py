"""The demo project: BBC news with a small labeled seed (a few labels deliberately wrong) and an
unlabeled pool; some articles are held back to play production traffic."""

from __future__ import annotations

import random
from dataclasses import dataclass

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from annotator.models import Project
from annotator.services.examples import examples_import
from annotator.services.projects import project_create

DEMO_PROJECT_NAME = "BBC news (demo)"


@dataclass
class DemoData:
    project: Project
    created: bool
    flipped: list[dict[str, str]]  # external_id, given (wrong) label, true label
    held_back: list[tuple[str, str]]  # (text, label) pairs not imported: production traffic for the demo


def demo_split(*, seed_per_class: int = 30, n_flips: int = 6, n_held_back: int = 300, rng_seed: int = 7):
    """Deterministic split of the corpus into seed rows (some flipped), pool rows and held-back texts."""
    from training.data import BBC_LABELS, load_bbc_news

    texts, labels = load_bbc_news()
    order = list(range(len(texts)))
    rng = random.Random(rng_seed)
    rng.shuffle(order)
    held_back = [(texts[i], labels[i]) for i in order[:n_held_back]]
    rest = order[n_held_back:]
    seed_ids: list[int] = []
    per_class = dict.fromkeys(BBC_LABELS, 0)
    for i in rest:
        if per_class[labels[i]] < seed_per_class:
            per_class[labels[i]] += 1
            seed_ids.append(i)
    flipped_ids = set(rng.sample(seed_ids, n_flips))
    rows, flipped = [], []
    for i in rest:
        row = {"text": texts[i], "external_id": f"bbc-{i:04d}"}
        if i in seed_ids:
            given = labels[i]
            if i in flipped_ids:
                given = rng.choice([name for name in BBC_LABELS if name != labels[i]])
                flipped.append({"external_id": row["external_id"], "given": given, "true": labels[i]})
            row.update(label=given, source="seed")
        else:
            row["source"] = "import"
        rows.append(row)
    return BBC_LABELS, rows, flipped, held_back


def demo_project_load(*, user: AbstractBaseUser) -> DemoData:
    """Create the demo project once; later calls find it and change nothing."""
    labels, rows, flipped, held_back = demo_split()
    project = Project.objects.filter(name=DEMO_PROJECT_NAME, memberships__user=user).first()
    if project is not None:
        return DemoData(project, False, flipped, held_back)
    with transaction.atomic():
        project = project_create(
            user=user, name=DEMO_PROJECT_NAME, task="single_label", labels=labels,
            settings={"drift_window_size": 50, "max_text_chars": 30_000, "guidelines": "Pick the topic the article is mainly about."},
        )
        for start in range(0, len(rows), 5000):
            examples_import(project=project, user=user, rows=rows[start:start + 5000])
    return DemoData(project, True, flipped, held_back)


def demo_traffic(*, held_back: list[tuple[str, str]], window: int = 50) -> list[list[dict[str, str]]]:
    """Batches of production samples for the demo: three windows like the training data, then three
    windows from two topics only (a shift in the class mix that the drift page should flag)."""
    steady = held_back[: 3 * window]
    shifted = [pair for pair in held_back[3 * window:] if pair[1] in ("sports", "tech")][: 3 * window]
    batches = []
    for part, name in ((steady, "steady"), (shifted, "shifted")):
        for start in range(0, len(part), window):
            batches.append([
                {"text": text, "external_id": f"prod-{name}-{start + i:04d}"}
                for i, (text, _) in enumerate(part[start:start + window])
            ])
    return batches
