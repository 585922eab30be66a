"""The rebuild's picks and queue writes as main had them before issue 15 (part 3), kept verbatim so that the
bulk rebuild can be compared with them on a fixed fixture: every pool score and embedding loaded into Python,
the holdout reservation hashed id by id, the queue written in batches with a check and a count per chunk.
Used by test_queue_policy_at_scale.py and bench/rebuild.py; do not "fix" it (the one change is marked)."""

from __future__ import annotations

from typing import Any

import numpy as np
from django.db import transaction

from annotator.db import in_chunks, is_postgres
from annotator.models import ExampleScore, ModelVersion, Project, QueueItem
from annotator.selectors.queue import DOUBTS, SUGGESTS
from annotator.services.bulk import allocate_ids
from annotator.services.holdout import held_out_ids, holdout_cut, reserved_for_holdout
from annotator.services.queue import REASONS
from annotator.services.queue_policy import DIVERSE_BLOCK, is_cold_start


def load_pool_embeddings(version: ModelVersion) -> dict[int, np.ndarray]:
    """Every chunk's embeddings of ``version``, by example id (empty when scoring saved none)."""
    from annotator.serving import version_dir

    directory = version_dir(version) / "pool-embeddings"
    out: dict[int, np.ndarray] = {}
    for path in sorted(directory.glob("chunk-*.npz")):
        with np.load(path) as data:
            out.update(zip(data["ids"].tolist(), data["embeddings"], strict=True))
    return out


Item = tuple[int, float, str]  # example id, priority (orders items within a reason), explanation


def pick_items(project: Project, version: ModelVersion,
               quota: dict[str, int]) -> tuple[dict[str, list[Item]], dict[str, Any]]:
    """The items of each reason, best first, and what was decided (strategy, cold start)."""
    from training.query import random_batch

    names_count = project.label_classes.count()
    multi = project.is_multi_label
    scores = ExampleScore.objects.filter(model_version=version)
    show = bool(project.setting("show_suggestions"))
    picked: dict[str, list[Item]] = {reason: [] for reason in REASONS}
    taken: set[int] = set()

    # The one change to main's code: its query had no ORDER BY, so the pool came in the table's physical order
    # (example-id order in a freshly loaded table, and not always after rows were deleted): the order random
    # draws and exact ties fall back on. Pinned to example-id order, the order the bulk rebuild defines.
    unlabeled = list(scores.filter(example__label_source="").order_by("example_id").values_list(
        "example_id", "probs", "entropy", "example__source"))
    # Examples kept for the stable holdout are offered only as random items (services.holdout).
    reserved_mask = reserved_for_holdout([r[0] for r in unlabeled], holdout_cut(version.metrics))
    reserved = [r[0] for r, keep in zip(unlabeled, reserved_mask, strict=True) if keep]
    unlabeled = [r for r, keep in zip(unlabeled, reserved_mask, strict=True) if not keep]
    production = sorted((r for r in unlabeled if r[3] == "production"), key=lambda r: -r[2])
    picked["drift"] = [(eid, 1.0 - rank / max(len(production), 1),
                        f"production sample the model is unsure about (entropy {ent:.2f})")
                       for rank, (eid, _, ent, _) in enumerate(production[: quota.get("drift", 0)])]
    taken.update(eid for eid, _, _ in picked["drift"])

    overlap = int(project.setting("overlap"))
    strategy = project.setting("query_strategy")
    diverse = bool(project.setting("diversity"))
    cold, cold_reason = is_cold_start(version, names_count)
    state: dict[str, Any] = {"strategy": strategy, "diversity": diverse, "cold_start": cold,
                             "cold_start_reason": cold_reason, "ranking": "activelab" if overlap > 1 else "mix"}

    if overlap > 1:
        picked_together = _activelab_items(project, version, [r for r in unlabeled if r[0] not in taken],
                                           quota.get("suspect", 0) + quota.get("uncertain", 0))
        if picked_together is not None:
            for example_id, priority, explanation, labeled in picked_together:
                picked["suspect" if labeled else "uncertain"].append((example_id, priority, explanation))
            taken.update(item[0] for item in picked_together)
        else:
            state["ranking"] = "mix"
    if state["ranking"] == "mix":
        picked["suspect"] = _suspects(project, version, scores, quota.get("suspect", 0), show=show)
        taken.update(eid for eid, _, _ in picked["suspect"])
        pool = [r for r in unlabeled if r[0] not in taken]
        n_uncertain = min(quota.get("uncertain", 0), len(pool))
        if n_uncertain:
            picked["uncertain"] = _uncertain(version, pool, n_uncertain, strategy=strategy, diverse=diverse,
                                             cold=cold, multi=multi)
            taken.update(eid for eid, _, _ in picked["uncertain"])

    n_random = quota.get("random", 0)
    for candidates, why in ((reserved, "a random example, held out to measure every version (none trains on it)"),
                            ([r[0] for r in unlabeled if r[0] not in taken],
                             "a random example, for an unbiased estimate of quality")):
        n = min(n_random - len(picked["random"]), len(candidates))
        if n > 0:
            chosen = random_batch(len(candidates), n, seed=version.number)
            picked["random"] += [(int(candidates[i]), 0.0, why) for i in chosen]
    state["held_back_for_holdout"] = len(reserved)
    return picked, state


def _suspects(project: Project, version: ModelVersion, scores: Any, n: int, *, show: bool) -> list[Item]:
    """Flagged labeled examples that people have not settled: held-out ones first, then worst label quality
    first.

    A wrong held-out label skews the figure of every version measured on it (and the promotion decisions
    taken on them), where a wrong training label is one of many: test sets are cleaned first (Northcutt,
    Athalye and Mueller 2021 found label errors in the test sets of ten common benchmarks large enough to
    reorder the models ranked on them)."""
    if n <= 0:
        return []
    rows = list(scores.filter(is_issue=True, example__settled=False).exclude(example__label_source="")
                .order_by("label_quality", "example_id")
                .values_list("example_id", "label_quality", "suggested_label"))
    held = held_out_ids(project, [row[0] for row in rows], holdout_cut(version.metrics))
    rows.sort(key=lambda row: row[0] not in held)  # stable: quality order within each group
    out = []
    for example_id, quality, suggested in rows[:n]:
        quality = quality or 0.0
        explanation = f"label quality {quality:.2f}"
        explanation += f"{SUGGESTS}{suggested or '?'}" if show else DOUBTS
        if example_id in held:
            explanation = f"held-out label in doubt (every version is measured on it); {explanation}"
        out.append((example_id, (2.0 if example_id in held else 1.0) - quality, explanation))
    return out


def _uncertain(version: ModelVersion, pool: list[tuple], n: int, *, strategy: str, diverse: bool, cold: bool,
               multi: bool) -> list[Item]:
    """The uncertain share: cold start -> representative sample; else the strategy in diverse blocks."""
    from training.query import random_batch, ranked_batches, representative_sample, score, strategy_for

    probs = np.array([r[1] for r in pool], dtype=np.float64)
    entropy = np.array([r[2] for r in pool], dtype=np.float64)
    embeddings = None
    if cold or diverse:
        embeddings_by_id = _pool_embeddings(version)
        if all(r[0] in embeddings_by_id for r in pool):
            embeddings = np.vstack([embeddings_by_id[r[0]] for r in pool]).astype(np.float32)
    if cold and embeddings is not None:
        order = representative_sample(embeddings, n, seed=version.number)
        return [(pool[i][0], 1.0 - rank / n,
                 f"cold start: a representative example (k-means); the {strategy} strategy takes over once "
                 f"uncertainty is reliable (entropy {entropy[i]:.2f})") for rank, i in enumerate(order)]
    if strategy == "random":
        order = random_batch(len(pool), n, seed=version.number)
        return [(pool[i][0], 1.0 - rank / n, f"random strategy (entropy {entropy[i]:.2f})")
                for rank, i in enumerate(order)]
    key = strategy_for(strategy, multi_label=multi)
    values = score(key, probs)
    order = ranked_batches(probs, n, strategy=key, embeddings=embeddings, diverse=diverse and embeddings is not None,
                           block=DIVERSE_BLOCK, seed=version.number)
    spread = "; in a diverse batch" if diverse and embeddings is not None else ""
    return [(pool[i][0], 1.0 - rank / n,
             f"{strategy} strategy: the model is unsure (score {values[i]:.2f}, entropy {entropy[i]:.2f}){spread}")
            for rank, i in enumerate(order)]


def _pool_embeddings(version: ModelVersion) -> dict[int, np.ndarray]:
    return load_pool_embeddings(version)


def _activelab_items(project: Project, version: ModelVersion, unlabeled: list[tuple],
                     n: int) -> list[tuple[int, float, str, bool]] | None:
    """Overlap > 1: labeled items for another label and unlabeled ones for a first label, one ActiveLab
    ranking. None when ActiveLab cannot run (no labeled scores), and the mix rule applies instead."""
    from annotator.services.consensus import activelab_candidates

    if project.is_multi_label:
        return None
    labeled = {
        example_id: np.asarray(probs, dtype=np.float64)
        for example_id, probs in ExampleScore.objects.filter(model_version=version).exclude(
            example__label_source="").values_list("example_id", "probs")
    }
    if not labeled or n <= 0:
        return None
    unlabeled_probs = (np.array([r[1] for r in unlabeled], dtype=np.float64) if unlabeled
                       else np.zeros((0, len(next(iter(labeled.values()))))))
    ranked = activelab_candidates(project=project, version=version, labeled_probs=labeled,
                                  unlabeled_ids=[r[0] for r in unlabeled], unlabeled_probs=unlabeled_probs, n=n)
    labeled_ids = set(labeled)
    return [(example_id, priority, explanation, example_id in labeled_ids)
            for example_id, priority, explanation in ranked]



def queue_add_many(
    *, project: Project, reason: str, items: list[tuple[int, float, str]], model_version_id: int | None = None,
    slots: int | None = None,
) -> int:
    """Queue ``(example_id, priority, explanation)`` items of one reason in bulk (one item per overlap slot,
    or ``slots``); examples with an open item in a slot are left alone, and so is a repeated example (its
    first item counts). Returns the number of items created."""
    if not items:
        return 0
    overlap = slots or int(project.setting("overlap"))
    first: dict[int, tuple[float, str]] = {}
    for example_id, priority, explanation in items:
        first.setdefault(example_id, (priority, explanation))
    with transaction.atomic():
        open_slots: set[tuple[int, int]] = set()
        for chunk in in_chunks(first):
            open_slots.update(QueueItem.objects.filter(
                example_id__in=chunk, status__in=[QueueItem.Status.PENDING, QueueItem.Status.LEASED]
            ).values_list("example_id", "slot"))
        rows = [
            QueueItem(project=project, example_id=example_id, reason=reason, priority=priority, slot=slot,
                      explanation=explanation[:300], model_version_id=model_version_id)
            for example_id, (priority, explanation) in first.items() for slot in range(overlap)
            if (example_id, slot) not in open_slots
        ]
        if not is_postgres():
            # SQLite runs one writing transaction at a time (BEGIN IMMEDIATE): nothing filled a slot since
            # the check above, so every row is inserted.
            QueueItem.objects.bulk_create(rows, batch_size=2000, ignore_conflicts=True)
            return len(rows)
        # A concurrent writer may fill a slot after the check (the insert then skips that row): give the rows
        # ids from the sequence and count the ones that were inserted.
        ids = allocate_ids(QueueItem, len(rows))
        for row, pk in zip(rows, ids, strict=True):
            row.pk = pk
        QueueItem.objects.bulk_create(rows, batch_size=2000, ignore_conflicts=True)
        return sum(QueueItem.objects.filter(id__in=chunk).count() for chunk in in_chunks(ids))
