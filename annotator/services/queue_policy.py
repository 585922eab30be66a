"""What goes into the review queue after a new version is scored, and in what proportions.

The rebuild (last stage of a train job) refills the pending queue from the new version's scores:

- ``suspect``: labeled examples the label-noise detector flags, worst label quality first, **except settled
  ones** (people re-checked them; see ``services.annotations.settlement_from``).
- ``drift``: unlabeled production samples the model is least sure about.
- ``uncertain``: unlabeled examples ranked by the project's ``query_strategy`` (entropy, margin, least
  confidence, or random), in diverse blocks (``diversity``) so that any lease from the front is both
  informative and spread over embedding space. Cold start (too few labels, or a model near chance):
  representative (k-means) sampling alone.
- ``random``: a uniform sample, for an unbiased estimate of quality: drawn first from the examples kept for the
  stable holdout (``services.holdout.reserved_for_holdout``), which no other reason offers, so each answer
  grows the holdout with a uniform sample of the pool.
- At scale (a million pool examples) nothing loads the whole pool: the rebuild reads counts, the top of each
  ranking, random rows at drawn positions, and the embeddings of its candidates (``services.queue_pool``);
  cold start clusters a uniform sample of ``COLD_START_SAMPLE`` examples.
- With overlap > 1, ``suspect`` and ``uncertain`` are ranked together by ActiveLab (another label for a
  labeled item against a first label for an unlabeled one, on one scale).

The **effective mix** it writes to ``Project.queue_state`` is the configured ``queue_mix`` with the suspect
share adapted to the detector's measured precision (:func:`adaptive_suspect_share`); leases draw reasons in
proportion to it (``services.queue.queue_lease``).
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from annotator.models import ExampleScore, Job, ModelVersion, Project, QueueItem
from annotator.selectors.noise import DETECTOR_MIN_REVIEWED, detector_precision
from annotator.selectors.queue import DOUBTS, SUGGESTS
from annotator.services.holdout import held_out_ids, holdout_cut, reserved_condition
from annotator.services.jobs import Heartbeat, job_create, job_fail, job_finish, stale_before
from annotator.services.pool_embeddings import pool_embeddings_for
from annotator.services.queue import REASONS, queue_add_many
from annotator.services.queue_pool import ACTIVELAB_ORDER, DRIFT_ORDER, STRATEGY_ORDER, ScoredPool
from annotator.services.stability import version_stability_update
from annotator.services.webhooks import queue_low_check

log = logging.getLogger(__name__)

# At this precision the configured suspect share holds; the share scales linearly with precision around it,
SUSPECT_PRECISION_PIVOT = 0.5
# never below this floor (so the detector keeps being measured) nor above the ceiling.
SUSPECT_SHARE_FLOOR = 0.02
SUSPECT_SHARE_CEILING = 0.5
# Cold start: fewer labels than this per class on average, or a validation macro-F1 within this of chance.
COLD_START_LABELS_PER_CLASS = 10
COLD_START_NEAR_CHANCE = 0.05
# Items per diverse block of the uncertain share (about one lease's worth of uncertain items).
DIVERSE_BLOCK = 25
# The uncertain share is chosen from the top of the strategy's ranking, this many candidates per item (at
# least MIN_CANDIDATES): enough for the diverse blocks (each clusters the 10 * DIVERSE_BLOCK best left).
CANDIDATES_PER_ITEM = 10
MIN_CANDIDATES = 2000
# Cold start clusters a uniform sample of the pool this large (k-means cost grows with it, coverage little).
COLD_START_SAMPLE = 20_000


# --- the detector and the mix ---------------------------------------------------------------------------
def adaptive_suspect_share(configured: float, *, reviewed: int, confirmed_errors: int) -> float:
    """The suspect share of the next queue, from the detector's precision over its latest answers.

    Until ``DETECTOR_MIN_REVIEWED`` suspects were answered the configured share holds. Then
    ``share = configured * precision / SUSPECT_PRECISION_PIVOT``, kept between
    ``min(configured, SUSPECT_SHARE_FLOOR)`` and ``min(SUSPECT_SHARE_CEILING, 2 * configured)``: when people
    confirm 9 of 10 flagged labels (precision 0.1), a configured 0.25 becomes 0.05 and the budget goes to
    first labels; when most flags are real errors, re-checks get up to twice their configured share.
    """
    if configured <= 0 or reviewed < DETECTOR_MIN_REVIEWED:
        return configured
    precision = confirmed_errors / reviewed
    share = configured * precision / SUSPECT_PRECISION_PIVOT
    return float(min(max(share, min(configured, SUSPECT_SHARE_FLOOR)), min(SUSPECT_SHARE_CEILING, 2 * configured)))


def effective_mix(project: Project, detector: dict[str, Any]) -> dict[str, float]:
    """The configured mix (normalised) with the adaptive suspect share; the other shares fill the rest in
    their configured proportions."""
    configured = {reason: float(project.setting("queue_mix").get(reason, 0.0)) for reason in REASONS}
    total = sum(configured.values()) or 1.0
    configured = {reason: share / total for reason, share in configured.items()}
    recent = detector["recent"]
    suspect = adaptive_suspect_share(configured["suspect"], reviewed=recent["reviewed"],
                                     confirmed_errors=recent["confirmed_errors"])
    others = sum(share for reason, share in configured.items() if reason != "suspect")
    mix = {}
    for reason, share in configured.items():
        if reason == "suspect":
            mix[reason] = suspect
        elif others > 0:
            mix[reason] = share / others * (1.0 - suspect)
        else:  # only suspects configured: whatever the detector gives up goes to uncertain items
            mix[reason] = (1.0 - suspect) if reason == "uncertain" else 0.0
    return {reason: round(share, 6) for reason, share in mix.items()}


def is_cold_start(version: ModelVersion, n_classes: int) -> tuple[bool, str]:
    """Whether uncertainty is not worth trusting yet, and why."""
    n_labeled = int((version.snapshot or {}).get("n_labeled") or version.n_train or 0)
    if n_labeled < COLD_START_LABELS_PER_CLASS * n_classes:
        return True, f"{n_labeled} labels for {n_classes} classes (fewer than {COLD_START_LABELS_PER_CLASS} per class)"
    metrics = version.metrics or {}
    # The held-out figure when there are enough held-out labels, else the validation split's.
    f1, measured_on = metrics.get("macro_f1"), "held-out"
    if f1 is None:
        f1, measured_on = (metrics.get("validation") or {}).get("macro_f1"), "validation"
    chance = 1.0 / max(n_classes, 2)
    if f1 is not None and f1 <= chance + COLD_START_NEAR_CHANCE:
        return True, f"{measured_on} macro-F1 {f1:.2f} is near chance ({chance:.2f})"
    return False, ""


# --- the rebuild ----------------------------------------------------------------------------------------
def rebuild_queue(train_job_id: int) -> None:
    """Refill the pending queue from the newest scores with the project's effective mix, then finish the
    train job.

    Safe to deliver twice (a redelivery, or the sweeper re-sending it): a queue_rebuild job row claims the
    rebuild, and a delivery that finds a live claim (its heartbeat is fresh) or a finished train job does
    nothing. The claim is taken and checked again before writing under the train job's row lock, so of two
    rebuilds at once one writes and the other leaves the queue alone. The train job's heartbeat is kept fresh
    while the rebuild works, so the sweeper does not take it for dead and send it again."""
    rebuild_job = _rebuild_claim(train_job_id)
    if rebuild_job is None:
        return
    try:
        with Heartbeat(train_job_id), Heartbeat(rebuild_job.pk):
            _rebuild(train_job_id, rebuild_job)
    except Exception as error:
        job_fail(rebuild_job.pk, error)  # the task fails the train job
        raise


def _locked_train_job(train_job_id: int) -> Job:
    """The train job's row, locked until the transaction ends (call inside one). The lock serialises the
    rebuilds of one project: the train job is the narrowest row a rebuild owns, and a project has one running
    train job at a time (the one_active_training_job constraint). ``of=("self",)`` leaves the project row
    unlocked for everyone else."""
    return Job.objects.select_for_update(of=("self",)).select_related("project").get(pk=train_job_id)


def _rebuild_claim(train_job_id: int) -> Job | None:
    """A running queue_rebuild job for this delivery to work under, or None when there is nothing to do: the
    train job is finished (the queue was rebuilt), or another delivery is rebuilding it right now."""
    with transaction.atomic():
        train_job = _locked_train_job(train_job_id)
        if train_job.status in Job.FINISHED:
            log.info("train job %s is %s; this rebuild does nothing", train_job_id, train_job.status)
            return None
        claims = Job.objects.filter(parent=train_job, kind=Job.Kind.QUEUE_REBUILD, status=Job.Status.RUNNING)
        if claims.filter(heartbeat_at__gte=stale_before()).exists():
            log.info("the queue of train job %s is being rebuilt by another worker; this delivery does nothing",
                     train_job_id)
            return None
        # A claim without a recent beat lost its worker: this delivery takes over (and the old one, should it
        # still run, finds its claim gone before it writes).
        claims.update(status=Job.Status.FAILED, finished_at=timezone.now(),
                      message="the worker was lost; the rebuild was taken over")
        rebuild_job = job_create(project=train_job.project, kind=Job.Kind.QUEUE_REBUILD, parent=train_job,
                                 params={"model_version_id": train_job.result["model_version_id"]})
        now = timezone.now()
        Job.objects.filter(pk=rebuild_job.pk).update(status=Job.Status.RUNNING, started_at=now, heartbeat_at=now)
    return rebuild_job


def _rebuild(train_job_id: int, rebuild_job: Job) -> None:
    train_job = Job.objects.select_related("project").get(pk=train_job_id)
    project = train_job.project
    version = ModelVersion.objects.get(pk=train_job.result["model_version_id"])
    detector = detector_precision(project)
    mix = effective_mix(project, detector)
    size = int(project.setting("queue_size"))
    quota = {reason: int(math.floor(size * share)) for reason, share in mix.items()}
    Job.objects.filter(pk=rebuild_job.pk).update(
        params={**rebuild_job.params, "quota": quota, "mix": mix})
    picked, state = pick_items(project, version, quota)
    state.update({"mix": mix, "configured_mix": project.setting("queue_mix"), "detector": detector,
                  "model_version": version.number, "rebuilt_at": timezone.now().isoformat()})
    try:
        version_stability_update(version=version)
    except Exception:  # noqa: BLE001 - the stopping signal is advice; it must not fail a trained version
        log.warning("stability of v%s not computed", version.number, exc_info=True)

    with transaction.atomic():
        train_job = _locked_train_job(train_job_id)
        claimed = Job.objects.filter(pk=rebuild_job.pk, status=Job.Status.RUNNING).exists()
        if train_job.status in Job.FINISHED or not claimed:
            log.info("the rebuild of train job %s was taken over or finished elsewhere; nothing written",
                     train_job_id)
            return
        # Pending items of older rebuilds give way, and so do expired leases (leases take those over as they
        # go, so they are pending in all but name); live leases stay with their annotators, and items a
        # reviewer sent (no model version) or a drift alert routed stay too.
        given_up = Q(status=QueueItem.Status.PENDING) | Q(status=QueueItem.Status.LEASED,
                                                          lease_expires_at__lt=timezone.now())
        QueueItem.objects.filter(given_up, project=project, model_version__isnull=False).exclude(
            reason=QueueItem.Reason.DRIFT).update(status=QueueItem.Status.CANCELLED)
        # ActiveLab's "another label" items want one more answer, not a full set of overlap slots.
        slots = 1 if state["ranking"] == "activelab" else None
        created = {reason: queue_add_many(project=project, reason=reason, items=items, model_version_id=version.id,
                                          slots=slots if reason == "suspect" else None)
                   for reason, items in picked.items()}
        Project.objects.filter(pk=project.pk).update(queue_state={**state, "created": created})
        # Finished in the same transaction as the items, so a delivery after this commit finds the train
        # job finished and writes nothing.
        job_finish(rebuild_job.pk, Job.Status.SUCCEEDED, message="queue rebuilt",
                   result={"created": created, "mix": mix, "strategy": state["strategy"]})
        result = {**train_job.result, "queue": created}
        job_finish(train_job.pk, Job.Status.SUCCEEDED, result=result,
                   message=f"v{version.number} trained{' and promoted' if result.get('promoted') else ''}; "
                           f"queue: {sum(created.values())} items")
    queue_low_check(project=project)  # a full queue again: the next fall below the threshold is reported


Item = tuple[int, float, str]  # example id, priority (orders items within a reason), explanation


def pick_items(project: Project, version: ModelVersion,
               quota: dict[str, int]) -> tuple[dict[str, list[Item]], dict[str, Any]]:
    """The items of each reason, best first, and what was decided (strategy, cold start).

    Reads a bounded number of rows whatever the pool's size (services.queue_pool): counts in one query, the
    top of each ranking in SQL, embeddings of the candidates only, random items at drawn positions."""
    names_count = project.label_classes.count()
    multi = project.is_multi_label
    show = bool(project.setting("show_suggestions"))
    picked: dict[str, list[Item]] = {reason: [] for reason in REASONS}
    taken: set[int] = set()  # open pool examples picked already (suspects are labeled: never in the pool)
    # Examples kept for the stable holdout are offered only as random items (services.holdout).
    pool = ScoredPool(version, holdout_cut(version.metrics))
    census = pool.census()

    production = pool.top(DRIFT_ORDER, quota.get("drift", 0), ("example_id", "entropy"), production=True)
    picked["drift"] = [(eid, 1.0 - rank / max(census.production, 1),
                        f"production sample the model is unsure about (entropy {ent:.2f})")
                       for rank, (eid, ent) in enumerate(production)]
    taken.update(eid for eid, _, _ in picked["drift"])

    overlap = int(project.setting("overlap"))
    strategy = project.setting("query_strategy")
    diverse = bool(project.setting("diversity"))
    cold, cold_reason = is_cold_start(version, names_count)
    state: dict[str, Any] = {"strategy": strategy, "diversity": diverse, "cold_start": cold,
                             "cold_start_reason": cold_reason, "ranking": "activelab" if overlap > 1 else "mix"}

    if overlap > 1:
        n_together = quota.get("suspect", 0) + quota.get("uncertain", 0)
        candidates = pool.top(ACTIVELAB_ORDER, _candidates(n_together), ("example_id", "probs"), exclude=taken)
        picked_together = _activelab_items(project, version, sorted(candidates), n_together)
        if picked_together is not None:
            for example_id, priority, explanation, labeled in picked_together:
                picked["suspect" if labeled else "uncertain"].append((example_id, priority, explanation))
            taken.update(item[0] for item in picked_together if not item[3])
        else:
            state["ranking"] = "mix"
    if state["ranking"] == "mix":
        picked["suspect"] = _suspects(project, version, quota.get("suspect", 0), show=show)
        n_pool = census.open - len(taken)
        n_uncertain = min(quota.get("uncertain", 0), n_pool)
        if n_uncertain:
            picked["uncertain"] = _uncertain(pool, n_pool, n_uncertain, taken, strategy=strategy, diverse=diverse,
                                             cold=cold, multi=multi)
            taken.update(eid for eid, _, _ in picked["uncertain"])

    n_random = quota.get("random", 0)
    for reserved, n_total, why in (
            (True, census.reserved, "a random example, held out to measure every version (none trains on it)"),
            (False, census.open - len(taken), "a random example, for an unbiased estimate of quality")):
        n = min(n_random - len(picked["random"]), n_total)
        if n > 0:
            rows = pool.sample(n_total, n, ("example_id",), seed=version.number, reserved=reserved,
                               exclude=() if reserved else taken)
            picked["random"] += [(int(eid), 0.0, why) for (eid,) in rows]
    state["held_back_for_holdout"] = census.reserved
    return picked, state


def _candidates(n: int) -> int:
    """How many of the top of a ranking go into the choice of ``n`` items: a diverse batch looks
    ``10 * DIVERSE_BLOCK`` deep past what earlier blocks took (training.query.ranked_batches), so this many
    candidates give the same items as the whole pool would."""
    return max(CANDIDATES_PER_ITEM * n, MIN_CANDIDATES)


def _suspects(project: Project, version: ModelVersion, n: int, *, show: bool) -> list[Item]:
    """Flagged labeled examples that people have not settled: held-out ones first, then worst label quality
    first.

    A wrong held-out label skews the figure of every version measured on it (and the promotion decisions
    taken on them), where a wrong training label is one of many: test sets are cleaned first (Northcutt,
    Athalye and Mueller 2021 found label errors in the test sets of ten common benchmarks large enough to
    reorder the models ranked on them).

    Reads the flags whose hash falls below the holdout's cut (the only ones that can be held out) and then
    the worst ``n`` plus as many, never every flag."""
    if n <= 0:
        return []
    cut = holdout_cut(version.metrics)
    flagged = (ExampleScore.objects.filter(model_version=version, is_issue=True, example__settled=False)
               .exclude(example__label_source="").order_by("label_quality", "example_id")
               .values_list("example_id", "label_quality", "suggested_label"))
    hashed = list(flagged.filter(reserved_condition(cut)))
    held = held_out_ids(project, [row[0] for row in hashed], cut)
    rows = [row for row in hashed if row[0] in held][:n]
    if len(rows) < n:
        rows += [row for row in flagged[:n + len(held)] if row[0] not in held][:n - len(rows)]
    out = []
    for example_id, quality, suggested in rows:
        quality = quality or 0.0
        explanation = f"label quality {quality:.2f}"
        explanation += f"{SUGGESTS}{suggested or '?'}" if show else DOUBTS
        if example_id in held:
            explanation = f"held-out label in doubt (every version is measured on it); {explanation}"
        out.append((example_id, (2.0 if example_id in held else 1.0) - quality, explanation))
    return out


def _uncertain(pool: ScoredPool, n_pool: int, n: int, taken: set[int], *, strategy: str, diverse: bool,
               cold: bool, multi: bool) -> list[Item]:
    """The uncertain share of the ``n_pool`` open examples not ``taken``: cold start -> representative sample
    of a bounded uniform sample; else the strategy in diverse blocks over the top candidates."""
    from training.query import ranked_batches, representative_sample, score, strategy_for

    version = pool.version
    if cold:
        sample = pool.uniform(n_pool, COLD_START_SAMPLE, ("example_id", "entropy"), seed=version.number,
                              exclude=taken)
        embeddings = pool_embeddings_for(version, [r[0] for r in sample]) if sample else None
        if embeddings is not None:
            order = representative_sample(embeddings.astype(np.float32), n, seed=version.number)
            return [(sample[i][0], 1.0 - rank / n,
                     f"cold start: a representative example (k-means); the {strategy} strategy takes over once "
                     f"uncertainty is reliable (entropy {sample[i][1]:.2f})") for rank, i in enumerate(order)]
    if strategy == "random":
        rows = pool.sample(n_pool, n, ("example_id", "entropy"), seed=version.number, exclude=taken)
        return [(eid, 1.0 - rank / n, f"random strategy (entropy {ent:.2f})") for rank, (eid, ent) in enumerate(rows)]
    # The top of the strategy's ranking, in example-id order (the order ties fall back on).
    candidates = sorted(pool.top(STRATEGY_ORDER[strategy], _candidates(n), ("example_id", "probs", "entropy"),
                                 exclude=taken))
    probs = np.array([r[1] for r in candidates], dtype=np.float64)
    entropy = np.array([r[2] for r in candidates], dtype=np.float64)
    embeddings = None
    if diverse:
        found = pool_embeddings_for(version, [r[0] for r in candidates])
        embeddings = found.astype(np.float32) if found is not None else None
    key = strategy_for(strategy, multi_label=multi)
    values = score(key, probs)
    order = ranked_batches(probs, n, strategy=key, embeddings=embeddings, diverse=diverse and embeddings is not None,
                           block=DIVERSE_BLOCK, seed=version.number)
    spread = "; in a diverse batch" if diverse and embeddings is not None else ""
    return [(candidates[i][0], 1.0 - rank / n,
             f"{strategy} strategy: the model is unsure (score {values[i]:.2f}, entropy {entropy[i]:.2f}){spread}")
            for rank, i in enumerate(order)]


def _activelab_items(project: Project, version: ModelVersion, unlabeled: list[tuple],
                     n: int) -> list[tuple[int, float, str, bool]] | None:
    """Overlap > 1: labeled items for another label and unlabeled ones for a first label, one ActiveLab
    ranking. None when ActiveLab cannot run (no labeled scores), and the mix rule applies instead.
    ``unlabeled``: ``(example_id, probs)`` of the candidates for a first label."""
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
