"""What the drift tests read from texts themselves: malformed Unicode (lone surrogates, replacement
characters, NUL and control characters) and the tokenisation statistics of an encoder (tokens before
truncation, truncated texts, unknown tokens), as a plain mapping or a ``training.encoder.TokenStats``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
_REPLACEMENT = re.compile("\ufffd")
_NUL = re.compile("\x00")
# C0/C1 control characters other than NUL, tab, newline and carriage return.
_CONTROL = re.compile("[\x01-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
MALFORMED_KINDS: dict[str, re.Pattern[str]] = {
    "lone_surrogate": _LONE_SURROGATE,
    "replacement_char": _REPLACEMENT,
    "nul": _NUL,
    "control_char": _CONTROL,
}



def malformed_text_counts(texts: Sequence[str]) -> dict[str, int]:
    """How many texts contain each kind of malformed Unicode, and how many contain any.

    Parameters
    ----------
    texts : sequence of str

    Returns
    -------
    dict
        ``{"lone_surrogate", "replacement_char", "nul", "control_char", "any"}`` -> number of texts.
    """
    counts = dict.fromkeys([*MALFORMED_KINDS, "any"], 0)
    for text in texts:
        hit = False
        for kind, pattern in MALFORMED_KINDS.items():
            if pattern.search(text):
                counts[kind] += 1
                hit = True
        counts["any"] += hit
    return counts



#: Accepted names of the three token statistics: the plain-dict names, then ``training.encoder.TokenStats``'s.
_TOKEN_FIELDS: dict[str, tuple[str, str]] = {
    "token_count": ("token_count", "n_tokens"),
    "truncated": ("truncated", "truncated"),
    "unk_count": ("unk_count", "n_unknown"),
}


def token_arrays(token_stats: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(token_count, truncated, unk_count)`` from a mapping or a ``training.encoder.TokenStats``."""
    found: dict[str, Any] = {}
    for key, names in _TOKEN_FIELDS.items():
        for name in names:
            value = (
                token_stats.get(name)
                if isinstance(token_stats, Mapping)
                else getattr(token_stats, name, None)
            )
            if value is not None:
                found[key] = value
                break
        else:
            raise ValueError(f"token_stats needs {key!r} (or {names[1]!r})")
    counts = np.asarray(found["token_count"], dtype=np.int64)
    truncated = np.asarray(found["truncated"], dtype=bool)
    unk = np.asarray(found["unk_count"], dtype=np.int64)
    if not counts.shape == truncated.shape == unk.shape:
        raise ValueError("token_stats arrays must have the same length")
    return counts, truncated, unk


def summarise_tokens(token_stats: Any) -> dict[str, Any]:
    """Share of truncated texts and of texts with unknown tokens, unknown-token rate, mean length and
    length quantiles of ``token_stats`` (``{"n_texts": 0}`` when empty)."""
    counts, truncated, unk = token_arrays(token_stats)
    n = int(counts.size)
    if n == 0:
        return {"n_texts": 0}
    return {
        "n_texts": n,
        "unk_token_rate": float(unk.sum() / max(1, counts.sum())),
        "texts_with_unk_share": float((unk > 0).mean()),
        "truncation_rate": float(truncated.mean()),
        "mean_length": float(counts.mean()),
        "length_quantiles": {str(q): float(np.quantile(counts, q)) for q in (0.05, 0.25, 0.5, 0.75, 0.95)},
    }

