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
