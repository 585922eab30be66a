"""The stopping signal: how much a new version's predictions changed from the previous version's on a fixed,
unlabeled stop set (stabilizing predictions, Bloodgood and Vijay-Shanker 2009).

The stop set
------------
An example belongs to the stop set when its id hashes into a fixed share of the hash space:
``((id mod 2^31) * 2654435761) mod 2^31 < 0.25 * 2^31`` (Knuth's multiplicative hash; the comparison reads
its well-mixed high bits, so membership does not follow import order or any period in it). Membership is a
property of the id alone: it never changes between versions, needs no stored list, and is one integer
expression that PostgreSQL and SQLite both evaluate in 64-bit arithmetic without overflow.

Two versions are compared on the stop set's examples that **both** scored while the example was
**unlabeled** (a score without ``label_quality``: labeled examples get out-of-sample noise scores instead),
the 2,000 lowest ids of them. So an example leaves the comparison once somebody labels it, production
samples and new imports join it only while fewer than 2,000 older ones qualify, and the comparison of a
pair of versions reads only their immutable scores: recomputing it later gives the same kappa. Below 50
common examples no kappa is given (with 50 items a single changed prediction already moves kappa by
about 0.03), and the stored result names the reason instead.

The rule
--------
``training.stopping``: Cohen's kappa of consecutive versions (multi-label: over the flattened label
indicators); stopped when each of the last 3 kappas is at least 0.99. Kappas are stored rounded to four
decimals and the rule reads the stored values, so the chain reads the same whenever it is recomputed.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from django.db.models import BigIntegerField, ExpressionWrapper, F, Value

from annotator.models import ExampleScore, ModelVersion
from annotator.selectors.projects import project_labels

STOP_SET_SHARE = 0.25
STOP_SET_SIZE = 2000
MIN_COMPARED = 50
_HASH_MODULUS = 2**31
_HASH_MULTIPLIER = 2654435761  # (2^31 - 1) * this < 2^63: no overflow in either database
_HASH_CUTOFF = int(STOP_SET_SHARE * _HASH_MODULUS)


def in_stop_set(example_id: int) -> bool:
    """The stop-set membership rule, in Python (the SQL below computes the same)."""
    return (example_id % _HASH_MODULUS) * _HASH_MULTIPLIER % _HASH_MODULUS < _HASH_CUTOFF


def _stop_set_bucket() -> ExpressionWrapper:
    modulus = Value(_HASH_MODULUS, output_field=BigIntegerField())
    multiplier = Value(_HASH_MULTIPLIER, output_field=BigIntegerField())
    return ExpressionWrapper((F("example_id") % modulus) * multiplier % modulus, output_field=BigIntegerField())


def stop_set_predictions(*, earlier: ModelVersion, later: ModelVersion) -> dict[int, tuple[list[str], list[str]]]:
    """Both versions' predicted label names for the stop-set examples they both scored unlabeled, by
    example id (at most ``STOP_SET_SIZE``, lowest ids first)."""
    later_unlabeled = ExampleScore.objects.filter(model_version=later, label_quality__isnull=True).values(
        "example_id")
    before = dict(
        ExampleScore.objects.filter(model_version=earlier, label_quality__isnull=True)
        .annotate(stop_bucket=_stop_set_bucket())
        .filter(stop_bucket__lt=_HASH_CUTOFF, example_id__in=later_unlabeled)
        .order_by("example_id")
        .values_list("example_id", "predicted")[:STOP_SET_SIZE]
    )
    after = dict(
        ExampleScore.objects.filter(model_version=later, label_quality__isnull=True, example_id__in=list(before))
        .values_list("example_id", "predicted")
    )
    return {example_id: (before[example_id] or [], after[example_id] or [])
            for example_id in sorted(before) if example_id in after}


def _as_arrays(pairs: list[tuple[list[str], list[str]]], *, multi: bool,
               names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    if not multi:
        return (np.array([b[0] if b else "" for b, _ in pairs], dtype=object).astype(str),
                np.array([a[0] if a else "" for _, a in pairs], dtype=object).astype(str))
    # Names outside the project's list (a renamed class) still count, as their own column.
    columns = {name: j for j, name in enumerate(names)}
    for b, a in pairs:
        for name in (*b, *a):
            columns.setdefault(name, len(columns))
    before = np.zeros((len(pairs), len(columns)), dtype=np.int8)
    after = np.zeros_like(before)
    for i, (b, a) in enumerate(pairs):
        before[i, [columns[name] for name in b]] = 1
        after[i, [columns[name] for name in a]] = 1
    return before, after


def _previous_ready(version: ModelVersion) -> list[ModelVersion]:
    return list(
        ModelVersion.objects.filter(project=version.project_id, status=ModelVersion.Status.READY,
                                    number__lt=version.number)
        .only("id", "number", "stability").order_by("-number")
    )


def _stored_kappa(version: ModelVersion) -> float | None:
    kappa = (version.stability or {}).get("kappa")
    return float(kappa) if isinstance(kappa, int | float) else None


def version_stability_update(*, version: ModelVersion) -> dict[str, Any]:
    """Compare ``version``'s predictions on the stop set with the previous ready version's, decide the
    stopping rule over the chain of stored kappas, and store the result in ``version.stability``.

    Returns the stored dict: ``kappa`` (None with a ``reason`` when there is nothing to compare), ``n``
    (examples compared), ``changed`` (share of them whose prediction changed), ``against_version``,
    ``window`` (the last kappas, oldest first, this version's last), ``window_versions``, ``threshold``,
    ``stopped`` and a ``message`` for people.
    """
    from training.stopping import (
        DEFAULT_THRESHOLD,
        DEFAULT_WINDOW,
        changed_share,
        prediction_agreement,
        predictions_stopped,
    )

    project = version.project
    window, threshold = DEFAULT_WINDOW, DEFAULT_THRESHOLD
    earlier = _previous_ready(version)
    previous = earlier[0] if earlier else None
    kappa: float | None = None
    changed: float | None = None
    n = 0
    reason = ""
    if previous is None:
        reason = "no earlier ready version to compare with"
    else:
        predictions = stop_set_predictions(earlier=previous, later=version)
        n = len(predictions)
        if n < MIN_COMPARED:
            reason = (f"only {n} stop-set example{'s' if n != 1 else ''} scored unlabeled by both v{previous.number} "
                      f"and v{version.number} (at least {MIN_COMPARED} are needed)")
        else:
            before, after = _as_arrays(list(predictions.values()), multi=project.is_multi_label,
                                       names=project_labels(project))
            agreement = prediction_agreement(before, after)
            share = changed_share(before, after)
            kappa = round(agreement, 4) if agreement is not None else None
            changed = round(share, 4) if share is not None else None

    chain = [(v.number, _stored_kappa(v)) for v in reversed(earlier[: window - 1])]
    chain.append((version.number, kappa))
    kappas = [k for _, k in chain]
    stopped = predictions_stopped(kappas, window=window, threshold=threshold)
    streak = 0
    for k in reversed(kappas):
        if k is None or k < threshold:
            break
        streak += 1
    if stopped:
        message = (f"predictions stopped changing (kappa {threshold:g} over the last {window} versions): "
                   "more labels like these are unlikely to help")
    elif kappa is not None and previous is not None and changed is not None:
        message = (f"predictions still changing: kappa {kappa:.3f} with v{previous.number} ({changed:.1%} of "
                   f"{n:,} stop-set predictions changed); the signal stops after {window} versions in a row at "
                   f"kappa {threshold:g} or more ({streak} so far)")
    else:
        message = f"no stopping signal yet: {reason}"
    result: dict[str, Any] = {
        "kappa": kappa,
        "n": n,
        "changed": changed,
        "against_version": previous.number if previous is not None else None,
        "stopped": stopped,
        "window": kappas,
        "window_versions": [number for number, _ in chain],
        "threshold": threshold,
        "message": message,
    }
    if reason:
        result["reason"] = reason
    ModelVersion.objects.filter(pk=version.pk).update(stability=result)
    version.stability = result
    return result
