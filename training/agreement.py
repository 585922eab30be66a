"""Agreement of several annotators whose answers are sets of label names (single-label answers are sets of
one): every distinct set becomes one integer code, and :func:`training.multiannotator.answer_agreement` does the rest."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from training.multiannotator import answer_agreement


def label_set_agreement(
    answers: Sequence[Mapping[str, Sequence[str]]],
    reference: Sequence[Sequence[str]] | None = None,
) -> dict[str, Any]:
    """How often annotators agree with each other and with a reference, comparing whole label sets.

    Parameters
    ----------
    answers : sequence of mappings, length n_items
        Per item, annotator name -> the labels of their answer (order does not matter).
    reference : sequence of sequences of str, length n_items, optional
        Per item, the labels each answer is compared with (e.g. the consensus); empty where there is none.

    Returns
    -------
    dict
        - ``agreement_rate``: share of agreeing pairs among all pairs of answers on the same item (None when no
          item has two answers);
        - ``n_pairs``: how many such pairs;
        - ``annotators``: annotator name (sorted) -> ``{"answered": int, "agreement": float or None}``, the
          items they answered and the share of their answers equal to the reference.
    """
    if reference is not None and len(reference) != len(answers):
        raise ValueError("one reference per item")
    codes: dict[tuple[str, ...], int] = {}

    def code(labels: Sequence[str]) -> int:
        return codes.setdefault(tuple(sorted(labels)), len(codes))

    names = sorted({name for item in answers for name in item})
    column = {name: j for j, name in enumerate(names)}
    matrix = np.full((len(answers), len(names)), np.nan)
    coded_reference = np.full(len(answers), np.nan)
    for i, item in enumerate(answers):
        for name, labels in item.items():
            matrix[i, column[name]] = code(labels)
        if reference is not None and reference[i]:
            coded_reference[i] = code(reference[i])
    rates = answer_agreement(matrix, coded_reference)
    return {
        "agreement_rate": rates["agreement_rate"],
        "n_pairs": rates["n_pairs"],
        "annotators": {name: {"answered": rates["answered"][j], "agreement": rates["agreement_with_reference"][j]}
                       for name, j in column.items()},
    }


def _code(labels: Sequence[str]) -> str:
    """One label set as one category (order does not matter)."""
    return "\x1f".join(sorted(labels))


def cohen_kappa_pairs(answers: Sequence[Mapping[str, Sequence[str]]], *, min_items: int = 2) -> list[dict[str, Any]]:
    """Cohen's kappa for every pair of annotators over the items both answered.

    Parameters
    ----------
    answers : sequence of mappings, length n_items
        Per item, annotator name -> the labels of their answer (a label set is one category).
    min_items : int
        Pairs with fewer shared items get ``kappa`` None.

    Returns
    -------
    list of dict
        One ``{"a", "b", "n", "agreement", "kappa"}`` per pair with at least one shared item, ``a`` < ``b``,
        sorted by names. ``agreement`` is the observed share of equal answers; ``kappa`` is
        :func:`sklearn.metrics.cohen_kappa_score`, None where it is undefined (both gave one and the same
        category throughout, so chance agreement is 1) or too few items were shared.
    """
    from sklearn.metrics import cohen_kappa_score

    shared: dict[tuple[str, str], tuple[list[str], list[str]]] = {}
    for item in answers:
        names = sorted(item)
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                left, right = shared.setdefault((a, b), ([], []))
                left.append(_code(item[a]))
                right.append(_code(item[b]))
    pairs = []
    for (a, b), (left, right) in sorted(shared.items()):
        n = len(left)
        agreement = sum(x == y for x, y in zip(left, right, strict=True)) / n
        kappa: float | None = None
        if n >= min_items and len(set(left) | set(right)) > 1:
            value = float(cohen_kappa_score(left, right))
            kappa = value if np.isfinite(value) else None
        pairs.append({"a": a, "b": b, "n": n, "agreement": agreement, "kappa": kappa})
    return pairs


def fleiss_kappa(counts: np.ndarray) -> float | None:
    """Fleiss' kappa of a team from category counts per item; items may have different numbers of raters.

    Parameters
    ----------
    counts : ndarray of shape (n_items, n_categories)
        How many raters put item i in category j. Items with fewer than two ratings are left out.

    Returns
    -------
    float or None
        ``(P_bar - P_e) / (1 - P_e)`` where ``P_i = (sum_j n_ij^2 - n_i) / (n_i (n_i - 1))`` is the share of
        agreeing rater pairs on item i, ``P_bar`` their mean, ``p_j`` the share of all ratings in category
        j and ``P_e = sum_j p_j^2``. With the same number of raters on every item this is Fleiss (1971)
        exactly (statsmodels' ``fleiss_kappa``); with varying numbers it is the usual generalisation.
        None when no item has two ratings or every rating is in one category (chance agreement is 1).
    """
    table = np.asarray(counts, dtype=float)
    if table.ndim != 2:
        raise ValueError("counts must be a 2-d array (items x categories)")
    if (table < 0).any():
        raise ValueError("counts must not be negative")
    raters = table.sum(axis=1)
    table, raters = table[raters >= 2], raters[raters >= 2]
    if not len(table):
        return None
    per_item = ((table**2).sum(axis=1) - raters) / (raters * (raters - 1))
    p_bar = float(per_item.mean())
    shares = table.sum(axis=0) / raters.sum()
    p_e = float((shares**2).sum())
    if p_e >= 1.0 - 1e-12:
        return None
    return (p_bar - p_e) / (1.0 - p_e)


def team_fleiss_kappa(answers: Sequence[Mapping[str, Sequence[str]]]) -> float | None:
    """:func:`fleiss_kappa` over the items two or more annotators answered (a label set is one category)."""
    categories: dict[str, int] = {}
    rows = []
    for item in answers:
        if len(item) < 2:
            continue
        row: dict[int, int] = {}
        for labels in item.values():
            j = categories.setdefault(_code(labels), len(categories))
            row[j] = row.get(j, 0) + 1
        rows.append(row)
    table = np.zeros((len(rows), max(1, len(categories))))
    for i, row in enumerate(rows):
        for j, n in row.items():
            table[i, j] = n
    return fleiss_kappa(table)


def median_answer_seconds(gaps: Sequence[float], *, cap: float) -> float | None:
    """The median time per answer from the gaps between one person's consecutive answers, in seconds.

    Gaps over ``cap`` are breaks (the person stopped working), not time spent on the item, and are left out;
    None when no gap is left."""
    kept = np.asarray([g for g in gaps if 0 <= g <= cap], dtype=float)
    return float(np.median(kept)) if len(kept) else None
