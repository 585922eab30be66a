"""Slices of the BBC news corpus (training.data.load_bbc_news) for the loop tests.

Articles are read once per session; each test takes disjoint, deterministic slices per topic so that
"held out" really means unseen.
"""

from __future__ import annotations

from functools import cache

from training.data import BBC_LABELS, load_bbc_news


@cache
def _by_label() -> dict[str, list[str]]:
    texts, labels = load_bbc_news(limit_per_label=120)
    out: dict[str, list[str]] = {name: [] for name in BBC_LABELS}
    for text, label in zip(texts, labels, strict=True):
        out[label].append(text)
    return out


def articles(label: str, start: int, stop: int) -> list[str]:
    """Articles ``start:stop`` of one topic (sorted by file name)."""
    return _by_label()[label][start:stop]


def labeled_rows(labels: list[str], start: int, stop: int, *, prefix: str = "l") -> list[dict[str, str]]:
    """Import rows with their true label, ``stop - start`` per topic."""
    return [
        {"external_id": f"{prefix}-{label}-{i}", "text": text, "label": label}
        for label in labels for i, text in enumerate(articles(label, start, stop), start=start)
    ]


def unlabeled_rows(labels: list[str], start: int, stop: int, *, prefix: str = "u") -> list[dict[str, str]]:
    return [
        {"external_id": f"{prefix}-{label}-{i}", "text": text}
        for label in labels for i, text in enumerate(articles(label, start, stop), start=start)
    ]
