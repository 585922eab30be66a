"""Out-of-sample predicted probabilities for every labeled example (K-fold cross-validation).

cleanlab needs, for each labeled example, probabilities from a model that did not see that example.
:func:`oos_probs` runs any ``fit_predict(train_idx, test_idx)`` over stratified folds, so a caller can
plug in any model. Views, each a genuinely different model of the same labels:

- :func:`oos_probs_frozen`: a logistic-regression head on cached (frozen) encoder embeddings;
- :func:`oos_probs_knn`: a leave-one-out k-nearest-neighbour estimate on the same embeddings;
- :func:`oos_probs_tfidf`: a lexical view, TF-IDF word and character n-grams with a linear model;
- :func:`oos_probs_finetuned`: fine-tuned encoder folds (strongest, but costly without a GPU).

:func:`label_noise_views` computes the cheap views (and fine-tuned folds on request) over one shared set
of folds, each choosing its one setting (``C``, neighbour count) by out-of-fold log loss
(:func:`oos_probs_logistic`), and :func:`weighted_ensemble` mixes them with non-negative weights that
minimise the mixture's out-of-fold log loss, so no view is weighted by hand. :func:`ensemble_probs` is the
plain weighted mean. Everything but the fine-tuned folds runs on one BLAS thread (:func:`one_blas_thread`).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

import numpy as np
import scipy.sparse as sp
from scipy.optimize import minimize
from sklearn.exceptions import ConvergenceWarning
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import KFold
from threadpoolctl import threadpool_limits

from training.data import stratified_folds

if TYPE_CHECKING:
    from training.train import TrainConfig

#: Probability given to a class the fold's model could not predict (absent from its training part).
MISSING_CLASS_EPSILON = 1e-6

FitPredict = Callable[[np.ndarray, np.ndarray], np.ndarray]
#: Dense features, or a scipy sparse matrix (TF-IDF).
Features: TypeAlias = "np.ndarray | sp.spmatrix"


@contextmanager
def one_blas_thread() -> Iterator[None]:
    """Run the enclosed linear algebra on one BLAS thread.

    The matrices here are small (n x 384 embeddings, k classes): splitting them over threads gains little,
    and on a shared 2-core worker (training, scoring and the web process side by side) OpenBLAS threads
    spin against each other. Measured on such a machine: one logistic-regression fit on 1,700 x 384
    embeddings took 2.7-4.0 s with 2 BLAS threads and 0.1-0.25 s with one.
    """
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def _fill_missing(probs: np.ndarray) -> np.ndarray:
    filled = np.where(np.isfinite(probs), probs, 0.0)
    filled = np.maximum(filled, MISSING_CLASS_EPSILON)
    return filled / filled.sum(axis=1, keepdims=True)


def log_loss_of(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean negative log probability of the given labels.

    Parameters
    ----------
    probs : np.ndarray, shape (n, k)
    labels : np.ndarray, shape (n,) int in [0, k)

    Returns
    -------
    float
        0.0 for no rows; probabilities are floored at ``MISSING_CLASS_EPSILON`` so one zero cannot make it
        infinite.
    """
    y = np.asarray(labels, dtype=np.int64)
    if y.size == 0:
        return 0.0
    picked = np.asarray(probs, dtype=np.float64)[np.arange(y.size), y]
    return float(-np.mean(np.log(np.maximum(picked, MISSING_CLASS_EPSILON))))


def oos_probs(
    fit_predict: FitPredict,
    labels: np.ndarray,
    n_classes: int,
    *,
    k: int = 5,
    seed: int = 0,
    folds: Sequence[tuple[np.ndarray, np.ndarray]] | None = None,
) -> np.ndarray:
    """Out-of-sample probabilities for every example from any model.

    Parameters
    ----------
    fit_predict : callable ``(train_idx, test_idx) -> np.ndarray of shape (len(test_idx), n_classes)``
        Trains on ``train_idx`` and returns probabilities for ``test_idx``. Columns follow the global class
        indices; the model may return 0 (or NaN) for classes absent from its training part.
    labels : np.ndarray, shape (n,) int in [0, n_classes)
    n_classes : int
    k, seed : int
        Fold count and shuffling seed (see :func:`stratified_folds`).
    folds : optional precomputed ``(train_idx, test_idx)`` pairs (to share folds between models).

    Returns
    -------
    np.ndarray, shape (n, n_classes), float64
        Rows sum to 1; every entry is at least ~``MISSING_CLASS_EPSILON``. With fewer than 2 examples
        (no fold is possible) each row is uniform.
    """
    y = np.asarray(labels, dtype=np.int64)
    n = y.shape[0]
    splits = list(folds) if folds is not None else stratified_folds(y, k, seed)
    out = np.full((n, n_classes), np.nan)
    if not splits:
        return np.full((n, n_classes), 1.0 / n_classes)
    for train_idx, test_idx in splits:
        fold_probs = np.asarray(fit_predict(np.asarray(train_idx), np.asarray(test_idx)), dtype=np.float64)
        if fold_probs.shape != (len(test_idx), n_classes):
            raise ValueError(
                f"fit_predict returned shape {fold_probs.shape}, expected ({len(test_idx)}, {n_classes})"
            )
        out[test_idx] = fold_probs
    if np.isnan(out).all(axis=1).any():
        raise ValueError("the folds do not cover every example")
    return _fill_missing(out)


def logistic_fit_predict(
    features: Features,
    labels: np.ndarray,
    n_classes: int,
    *,
    C: float = 1.0,
    max_iter: int = 1000,
) -> FitPredict:
    """A ``fit_predict`` for :func:`oos_probs`: multinomial logistic regression on fixed features.

    Parameters
    ----------
    features : np.ndarray of shape (n, d), or a scipy sparse matrix of that shape (e.g. TF-IDF)
    labels : np.ndarray, shape (n,) int
    n_classes : int
    C : float
        Inverse L2 regularisation strength (sklearn's convention).
    max_iter : int

    Returns
    -------
    callable ``(train_idx, test_idx) -> (len(test_idx), n_classes)`` probabilities
    """
    x: Features = sp.csr_matrix(features) if sp.issparse(features) else np.asarray(features, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)

    def fit_predict(train_idx: np.ndarray, test_idx: np.ndarray) -> np.ndarray:
        probs = np.zeros((len(test_idx), n_classes))
        seen = np.unique(y[train_idx])
        if seen.size == 1:
            # One class in the training part: the only prediction such a model can make.
            probs[:, seen[0]] = 1.0
            return probs
        model = LogisticRegression(C=C, max_iter=max_iter)
        with warnings.catch_warnings(), one_blas_thread():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(x[train_idx], y[train_idx])
            probs[:, model.classes_] = model.predict_proba(x[test_idx])
        return probs

    return fit_predict


def select_regularization(
    embeddings: Features,
    labels: np.ndarray,
    *,
    grid: Sequence[float] = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0),
    k: int = 3,
    seed: int = 0,
) -> float:
    """Choose the logistic-regression ``C`` with the lowest cross-validated log-loss.

    Log-loss rather than accuracy because the probabilities themselves feed cleanlab and the queue.
    Choosing ``C`` on the same rows that later get out-of-sample probabilities leaks one scalar, which
    is the usual (and negligible) price of not nesting a second cross-validation.

    Parameters
    ----------
    embeddings : np.ndarray of shape (n, d), or a scipy sparse matrix of that shape
    labels : np.ndarray, shape (n,) int
    grid : candidate ``C`` values
    k, seed : folds and seed of the inner cross-validation

    Returns
    -------
    float
        The best ``C``; ``1.0`` when the data are too small to compare (fewer than 2 folds possible).
    """
    y = np.asarray(labels, dtype=np.int64)
    n_classes = int(y.max()) + 1 if y.size else 1
    folds = stratified_folds(y, k, seed)
    if not folds or np.unique(y).size < 2:
        return 1.0
    best_c, best_loss = 1.0, np.inf
    for c in grid:
        probs = oos_probs(logistic_fit_predict(embeddings, y, n_classes, C=c), y, n_classes, folds=folds)
        loss = log_loss_of(probs, y)
        if loss < best_loss - 1e-9:
            best_c, best_loss = float(c), loss
    return best_c


def oos_probs_logistic(
    features: Features,
    labels: np.ndarray,
    n_classes: int,
    *,
    C: float | Sequence[float] = 1.0,
    k: int = 5,
    seed: int = 0,
    folds: Sequence[tuple[np.ndarray, np.ndarray]] | None = None,
    max_iter: int = 1000,
) -> tuple[np.ndarray, float]:
    """Out-of-sample logistic-regression probabilities, choosing ``C`` on the same folds.

    With several ``C`` values, they are tried in increasing order, every fold for each, and the ``C``
    whose out-of-fold probabilities have the lowest log loss is kept, with those probabilities as they
    are. The search stops at the first ``C`` that does worse than the one before it: held-out log loss
    falls and then rises as regularisation weakens, so the rest of the grid would only cost time.
    Picking one scalar on all rows is the only leak (as in :func:`select_regularization`, which pays for
    a separate inner cross-validation instead).

    Solvers: dense features use L-BFGS, each ``C`` from scratch (a warm start would stop L-BFGS at once:
    sklearn scales the penalty by ``1 / (C n)``, so the previous solution already meets the gradient
    tolerance). Sparse features (TF-IDF: tens of thousands of columns, where L-BFGS's per-iteration cost
    grows with the column count) use SAGA, each fold's fit warm-started from its fit at the previous
    ``C`` (SAGA stops on the change of the weights, so the warm start is sound). Both stop at tolerance
    ``1e-3``: against ``1e-4`` the held-out log loss moved in the fourth decimal at a third of the time.

    Parameters
    ----------
    features : np.ndarray of shape (n, d), or a scipy sparse matrix of that shape
    labels : np.ndarray, shape (n,) int in [0, n_classes)
    n_classes : int
    C : float or sequence of float
        One inverse regularisation strength, or candidates to choose from.
    k, seed : int
        Folds and seed (see :func:`stratified_folds`).
    folds : optional precomputed ``(train_idx, test_idx)`` pairs (shared with other views).
    max_iter : int

    Returns
    -------
    probs : np.ndarray, shape (n, n_classes)
        Rows sum to 1; with fewer than 2 examples each row is uniform.
    C : float
        The value used.
    """
    x: Features = sp.csr_matrix(features) if sp.issparse(features) else np.asarray(features, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"{x.shape[0]} feature rows but {y.shape[0]} labels")
    grid = sorted({float(c) for c in (C if isinstance(C, Sequence) else [C])})
    n = y.shape[0]
    splits = list(folds) if folds is not None else stratified_folds(y, k, seed)
    if not splits or not grid:
        return np.full((n, n_classes), 1.0 / n_classes), (grid or [1.0])[0]
    sparse = sp.issparse(x)
    models = [
        LogisticRegression(
            max_iter=max_iter, solver="saga" if sparse else "lbfgs", tol=1e-3, warm_start=sparse
        )
        for _ in splits
    ]
    best: tuple[np.ndarray, float] | None = None
    best_loss = previous_loss = np.inf
    for c in grid:
        out = np.full((n, n_classes), np.nan)
        for model, (train_idx, test_idx) in zip(models, splits, strict=True):
            seen = np.unique(y[train_idx])
            if seen.size == 1:  # one class in the training part: the only prediction such a model can make
                out[test_idx] = 0.0
                out[test_idx, seen[0]] = 1.0
                continue
            model.set_params(C=c)
            with warnings.catch_warnings(), one_blas_thread():
                warnings.simplefilter("ignore", ConvergenceWarning)
                model.fit(x[train_idx], y[train_idx])
                out[np.ix_(test_idx, model.classes_)] = model.predict_proba(x[test_idx])
        if np.isnan(out).all(axis=1).any():
            raise ValueError("the folds do not cover every example")
        probs = _fill_missing(out)
        loss = log_loss_of(probs, y)
        if loss < best_loss:
            best, best_loss = (probs, c), loss
        if loss > previous_loss:
            break
        previous_loss = loss
    assert best is not None
    return best


def oos_probs_frozen(
    embeddings: np.ndarray,
    labels: np.ndarray,
    n_classes: int,
    *,
    k: int = 5,
    seed: int = 0,
    C: float | Literal["auto"] = 1.0,
    folds: Sequence[tuple[np.ndarray, np.ndarray]] | None = None,
) -> np.ndarray:
    """Out-of-sample probabilities from a logistic-regression head on frozen embeddings.

    Parameters
    ----------
    embeddings : np.ndarray, shape (n, d)
        Cached encoder embeddings of the labeled examples.
    labels : np.ndarray, shape (n,) int in [0, n_classes)
    n_classes : int
    k, seed : int
        Folds and seed (see :func:`stratified_folds`).
    C : float or "auto"
        Inverse regularisation strength; ``"auto"`` picks it with :func:`select_regularization`.
    folds : optional precomputed ``(train_idx, test_idx)`` pairs (shared with other views).

    Returns
    -------
    np.ndarray, shape (n, n_classes)
        Rows sum to 1; classes a fold's model never saw get ~``MISSING_CLASS_EPSILON``.
    """
    y = np.asarray(labels, dtype=np.int64)
    x = np.asarray(embeddings)
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"{x.shape[0]} embeddings but {y.shape[0]} labels")
    c = select_regularization(x, y, seed=seed) if C == "auto" else float(C)
    return oos_probs(logistic_fit_predict(x, y, n_classes, C=c), y, n_classes, k=k, seed=seed, folds=folds)


def oos_probs_frozen_multilabel(
    embeddings: np.ndarray,
    labels: np.ndarray,
    n_classes: int | None = None,
    *,
    k: int = 5,
    seed: int = 0,
    C: float = 1.0,
) -> np.ndarray:
    """Out-of-sample per-class probabilities for multi-label data (one-vs-rest logistic regressions).

    Parameters
    ----------
    embeddings : np.ndarray, shape (n, d)
    labels : np.ndarray, shape (n, k_classes) 0/1 indicators
    n_classes : int, optional
        ``k_classes``, checked against ``labels`` when given (the same call shape as :func:`oos_probs_frozen`).
    k, seed : int
        Folds (plain shuffled K-fold: label sets do not stratify) and seed.
    C : float

    Returns
    -------
    np.ndarray, shape (n, k_classes)
        Independent probabilities in (0, 1). A class that is always (or never) present in a fold's
        training part gets its smoothed training frequency instead of a fitted model.
    """
    x = np.asarray(embeddings, dtype=np.float64)
    y = np.asarray(labels).astype(np.int64)
    if y.ndim != 2 or (n_classes is not None and y.shape[1] != n_classes):
        raise ValueError(f"labels must have shape (n, {n_classes or 'k'}), got {y.shape}")
    n, n_classes = y.shape
    if n < 2:
        return np.full((n, n_classes), 0.5)
    splitter = KFold(n_splits=max(2, min(k, n)), shuffle=True, random_state=seed)
    out = np.zeros((n, n_classes))
    for train_idx, test_idx in splitter.split(x):
        for c in range(n_classes):
            target = y[train_idx, c]
            if target.min() == target.max():
                out[test_idx, c] = (target.sum() + 0.5) / (target.size + 1.0)
                continue
            model = LogisticRegression(C=C, max_iter=1000)
            with warnings.catch_warnings(), one_blas_thread():
                warnings.simplefilter("ignore", ConvergenceWarning)
                model.fit(x[train_idx], target)
                out[test_idx, c] = model.predict_proba(x[test_idx])[:, 1]
    return np.clip(out, MISSING_CLASS_EPSILON, 1.0 - MISSING_CLASS_EPSILON)


#: Neighbour counts :func:`oos_probs_knn` compares when ``n_neighbors="auto"``.
KNN_GRID: tuple[int, ...] = (5, 10, 20, 50)


def _nearest(x: np.ndarray, candidates: np.ndarray, kk: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's ``kk`` most similar candidates (never itself), most similar first: (index, cosine)."""
    n = x.shape[0]
    index = np.zeros((n, kk), dtype=np.int64)
    cosine = np.zeros((n, kk))
    with one_blas_thread():
        for start in range(0, n, 1024):
            block = slice(start, min(n, start + 1024))
            sims = x[block] @ x[candidates].T
            rows = np.arange(sims.shape[0])
            own = np.searchsorted(candidates, rows + start)
            is_candidate = (own < candidates.size) & (
                candidates[np.minimum(own, candidates.size - 1)] == rows + start
            )
            sims[rows[is_candidate], own[is_candidate]] = -np.inf
            top = np.argpartition(-sims, kk - 1, axis=1)[:, :kk]
            top_sims = np.take_along_axis(sims, top, axis=1)
            order = np.argsort(-top_sims, axis=1, kind="stable")
            index[block] = candidates[np.take_along_axis(top, order, axis=1)]
            cosine[block] = np.take_along_axis(top_sims, order, axis=1)
    return index, cosine


def _knn_vote(
    labels: np.ndarray, index: np.ndarray, cosine: np.ndarray, n_classes: int, kk: int, smoothing: float
) -> np.ndarray:
    n = index.shape[0]
    out = np.zeros((n, n_classes))
    weights = np.clip(cosine[:, :kk], 0.0, None) + 1e-6
    np.add.at(out, (np.repeat(np.arange(n), kk), labels[index[:, :kk]].ravel()), weights.ravel())
    out += smoothing / n_classes
    return out / out.sum(axis=1, keepdims=True)


def oos_probs_knn(
    embeddings: np.ndarray,
    labels: np.ndarray,
    n_classes: int,
    *,
    n_neighbors: int | Literal["auto"] = 10,
    smoothing: float = 0.1,
    neighbour_mask: np.ndarray | None = None,
) -> np.ndarray:
    """Leave-one-out k-nearest-neighbour class probabilities (cosine similarity, similarity-weighted).

    Each example is scored only by its neighbours, never by itself, so the probabilities are
    out-of-sample without folds. Near-duplicates carrying different labels show up strongly here.

    Parameters
    ----------
    embeddings : np.ndarray, shape (n, d)
    labels : np.ndarray, shape (n,) int
    n_classes : int
    n_neighbors : int or "auto"
        Neighbours per example (capped at ``n - 1``). ``"auto"`` takes the count in :data:`KNN_GRID` whose
        leave-one-out probabilities have the lowest log loss against the given labels (one similarity
        pass serves every count): few neighbours suit small classes and near-duplicates, many suit short,
        noisy texts whose nearest neighbour is often of another class.
    smoothing : float
        Pseudo-count spread evenly over classes so no class gets probability 0.
    neighbour_mask : np.ndarray of bool, shape (n,), optional
        Only these rows may serve as neighbours (e.g. leave out examples already flagged as label
        issues, so a second round is not voted by the errors it looks for). Every row is still scored.

    Returns
    -------
    np.ndarray, shape (n, n_classes)
        Rows sum to 1.
    """
    return _knn_probs(embeddings, labels, n_classes, n_neighbors, smoothing, neighbour_mask)[0]


def _knn_probs(
    embeddings: np.ndarray,
    labels: np.ndarray,
    n_classes: int,
    n_neighbors: int | Literal["auto"],
    smoothing: float,
    neighbour_mask: np.ndarray | None,
) -> tuple[np.ndarray, int]:
    """:func:`oos_probs_knn`'s probabilities and the neighbour count used (0: too few rows, uniform)."""
    x = np.asarray(embeddings, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    n = x.shape[0]
    uniform = np.full((n, n_classes), 1.0 / n_classes)
    if n < 2:
        return uniform, 0
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    allowed = np.ones(n, dtype=bool) if neighbour_mask is None else np.asarray(neighbour_mask, dtype=bool)
    candidates = np.flatnonzero(allowed)
    # A row that is itself a candidate cannot be its own neighbour, so it has one fewer to choose from.
    grid = KNN_GRID if n_neighbors == "auto" else (int(n_neighbors),)
    counts = [c for c in sorted({min(c, candidates.size - 1) for c in grid}) if c >= 1]
    if not counts:
        return uniform, 0
    index, cosine = _nearest(x, candidates, counts[-1])
    best, best_count, best_loss = uniform, 0, np.inf
    for count in counts:
        probs = _knn_vote(y, index, cosine, n_classes, count, smoothing)
        loss = log_loss_of(probs, y) if len(counts) > 1 else 0.0
        if loss < best_loss - 1e-9:
            best, best_count, best_loss = probs, count, loss
    return best, best_count


def ensemble_probs(
    list_of_probs: Sequence[np.ndarray], weights: Sequence[float] | None = None, *, multi_label: bool = False
) -> np.ndarray:
    """Weighted arithmetic mean of several probability matrices.

    Parameters
    ----------
    list_of_probs : sequence of np.ndarray, each shape (n, k)
    weights : sequence of float, optional
        Non-negative, one per matrix; equal weights by default.
    multi_label : bool
        Independent per-class probabilities: averaged, not renormalised per row.

    Returns
    -------
    np.ndarray, shape (n, k)
        Rows sum to 1 unless ``multi_label``.
    """
    if not list_of_probs:
        raise ValueError("need at least one probability matrix")
    stack = np.stack([np.asarray(p, dtype=np.float64) for p in list_of_probs])
    w = np.ones(stack.shape[0]) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (stack.shape[0],) or (w < 0).any() or w.sum() <= 0:
        raise ValueError("weights must be non-negative, one per matrix, not all zero")
    mean = np.tensordot(w / w.sum(), stack, axes=1)
    return mean if multi_label else mean / mean.sum(axis=1, keepdims=True)


#: ``C`` values :func:`oos_probs_tfidf` compares when ``C="auto"`` (sparse TF-IDF rows of unit norm need
#: weaker regularisation than dense embeddings).
TFIDF_C_GRID: tuple[float, ...] = (1.0, 3.0, 10.0, 30.0)


def tfidf_features(
    texts: Sequence[str],
    *,
    word_ngrams: tuple[int, int] = (1, 2),
    char_ngrams: tuple[int, int] = (2, 5),
    min_df: int = 2,
    max_chars: int | None = 1000,
) -> sp.csr_matrix:
    """Lexical features: TF-IDF word n-grams beside TF-IDF character n-grams (within word boundaries).

    The vocabulary and IDF come from all ``texts``; no label is involved, so fitting them on the examples
    that are later held out leaks nothing about those examples' labels. Word n-grams catch names and
    phrases; character n-grams catch misspellings, inflections and the sub-word cues short texts live on.
    Both use sublinear term frequency (1 + log tf) and are L2-normalised per row, then placed side by side.

    Parameters
    ----------
    texts : sequence of str, length n
    word_ngrams, char_ngrams : (min, max) n-gram lengths
    min_df : int
        n-grams seen in fewer texts than this are dropped. A term of a single text can never carry
        anything from a training fold to a held-out one (it is in one or the other), and such terms are
        most of the vocabulary (three quarters of the word n-grams of 5,000 short texts), so 2 loses
        nothing and saves much of the time.
    max_chars : int or None
        Only the first ``max_chars`` characters of each text count (long texts make the character
        vocabulary, and the time, grow without changing the topic words much); ``None`` keeps all.

    Returns
    -------
    scipy.sparse.csr_matrix, shape (n, n_features)
    """
    docs = [t[:max_chars] if max_chars else t for t in texts]
    if not docs:
        return sp.csr_matrix((0, 0))
    blocks = []
    for analyzer, ngrams in (("word", word_ngrams), ("char_wb", char_ngrams)):
        vectorizer = TfidfVectorizer(
            analyzer=analyzer,
            ngram_range=ngrams,
            min_df=min(min_df, len(docs)),
            sublinear_tf=True,
            strip_accents="unicode",
            dtype=np.float64,
        )
        try:
            blocks.append(vectorizer.fit_transform(docs))
        except ValueError:  # an empty vocabulary (texts without a single word or n-gram)
            blocks.append(sp.csr_matrix((len(docs), 0)))
    return sp.hstack(blocks, format="csr")


def oos_probs_tfidf(
    texts: Sequence[str],
    labels: np.ndarray,
    n_classes: int,
    *,
    k: int = 5,
    seed: int = 0,
    C: float | Literal["auto"] = "auto",
    folds: Sequence[tuple[np.ndarray, np.ndarray]] | None = None,
    word_ngrams: tuple[int, int] = (1, 2),
    char_ngrams: tuple[int, int] = (2, 5),
) -> np.ndarray:
    """Out-of-sample probabilities from a lexical view: logistic regression on TF-IDF n-grams.

    A model of the surface words, with none of the encoder's knowledge, so its mistakes differ from the
    embedding views' mistakes; that difference is what makes it worth mixing in (see
    :func:`weighted_ensemble`). Each fold's model is fitted on the other folds' labels only.

    Parameters
    ----------
    texts : sequence of str, length n
    labels : np.ndarray, shape (n,) int in [0, n_classes)
    n_classes : int
    k, seed : int
        Folds and seed (see :func:`stratified_folds`).
    C : float or "auto"
        Inverse L2 regularisation strength; ``"auto"`` takes the value in :data:`TFIDF_C_GRID` whose
        out-of-fold probabilities have the lowest log loss (:func:`oos_probs_logistic`).
    folds : optional precomputed ``(train_idx, test_idx)`` pairs (shared with other views).
    word_ngrams, char_ngrams : (min, max) n-gram lengths (see :func:`tfidf_features`).

    Returns
    -------
    np.ndarray, shape (n, n_classes)
        Rows sum to 1.
    """
    y = np.asarray(labels, dtype=np.int64)
    if len(texts) != y.shape[0]:
        raise ValueError(f"{len(texts)} texts but {y.shape[0]} labels")
    x = tfidf_features(texts, word_ngrams=word_ngrams, char_ngrams=char_ngrams)
    if x.shape[1] == 0:
        return np.full((y.shape[0], n_classes), 1.0 / n_classes)
    grid = TFIDF_C_GRID if C == "auto" else (float(C),)
    return oos_probs_logistic(x, y, n_classes, C=grid, k=k, seed=seed, folds=folds)[0]


@dataclass
class EnsembleReport:
    """How :func:`weighted_ensemble` mixed its views.

    Attributes
    ----------
    log_loss : dict of str to float
        Each view's out-of-fold log loss against the given labels (after its temperature).
    weights : dict of str to float
        Non-negative mixture weights summing to 1.
    ensemble_log_loss : float
        The mixture's log loss (never above the best single view's).
    method : str
        ``"min_log_loss"`` (optimised weights), ``"single_view"`` (one view given) or
        ``"best_view"`` (the fallback: the optimiser failed, so the view with the lowest log loss alone).
    seconds : dict of str to float
        Time spent computing each view, when the caller measured it.
    settings : dict of str to dict
        What each view chose for itself (``C``, neighbour count), when the caller passed it.
    temperatures : dict of str to float
        The temperature each view was scaled by before weighing (1.0: not calibrated).
    """

    log_loss: dict[str, float]
    weights: dict[str, float]
    ensemble_log_loss: float
    method: str
    seconds: dict[str, float] = field(default_factory=dict)
    settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    temperatures: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """``{"views": {name: {log_loss, weight, temperature[, seconds][, settings]}}, "ensemble_log_loss",
        "method"}``."""
        return {
            "views": {
                name: {
                    "log_loss": self.log_loss[name],
                    "weight": self.weights[name],
                    "temperature": self.temperatures.get(name, 1.0),
                    **({"seconds": self.seconds[name]} if name in self.seconds else {}),
                    **({"settings": self.settings[name]} if name in self.settings else {}),
                }
                for name in self.log_loss
            },
            "ensemble_log_loss": self.ensemble_log_loss,
            "method": self.method,
        }


def _mixture_weights(picked: np.ndarray) -> np.ndarray | None:
    """Simplex weights minimising ``-mean(log(picked @ w))``; None when SLSQP does not converge."""
    n_views = picked.shape[1]

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        mixed = np.maximum(picked @ w, MISSING_CLASS_EPSILON)
        return float(-np.mean(np.log(mixed))), -(picked / mixed[:, None]).mean(axis=0)

    result = minimize(
        loss,
        np.full(n_views, 1.0 / n_views),
        jac=True,
        method="SLSQP",
        bounds=[(0.0, 1.0)] * n_views,
        constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1.0, "jac": lambda w: np.ones_like(w)}],
        options={"maxiter": 200, "ftol": 1e-10},
    )
    weights = np.clip(np.asarray(result.x, dtype=np.float64), 0.0, None)
    if not result.success or not np.isfinite(weights).all() or weights.sum() <= 0:
        return None
    return weights / weights.sum()


def weighted_ensemble(
    views: Mapping[str, np.ndarray],
    labels: np.ndarray,
    n_classes: int | None = None,
    *,
    calibrate: bool = True,
    seconds: Mapping[str, float] | None = None,
    settings: Mapping[str, Mapping[str, Any]] | None = None,
) -> tuple[np.ndarray, EnsembleReport]:
    """Mix out-of-fold probability matrices with weights that minimise the mixture's log loss.

    First, with ``calibrate``, each view is temperature-scaled (``P_v ** (1 / T_v)``, renormalised; ``T_v``
    minimises that view's out-of-fold log loss, :func:`training.calibration.fit_temperature`), so that the
    weights are not spent on correcting one view's over- or under-confidence (kNN's smoothed votes and a
    regularised linear model are confident on different scales). Then the weights are the non-negative,
    sum-to-one ``w`` minimising ``-mean_i log(sum_v w_v * P_v[i, y_i])`` (convex in ``w``; scipy's SLSQP
    with the analytic gradient), so a view earns weight by predicting the given labels out of fold, not
    by a hand-set rule, and a view that only repeats another earns little. Every view is out-of-fold, so
    the labels the weights are fitted on were never seen by the models they weigh; the temperatures and
    weights (a few scalars) are the only things fitted on all rows. Fallback when the optimiser fails:
    all weight on the view with the lowest log loss (``method="best_view"``); the result is then never
    worse than any single view.

    On BBC headlines with 10% planted flips (``bench/noise.py``) calibrating first raised the flip AUROC of
    the mixture by about 0.001 and never lowered it; weighting by a noise-aware likelihood, or on the rows
    an equal-weight mixture did not flag, did worse than this plain log loss.

    Parameters
    ----------
    views : mapping of name to np.ndarray, each shape (n, n_classes), rows summing to 1
        Out-of-fold probabilities, e.g. from :func:`label_noise_views`.
    labels : np.ndarray, shape (n,) int
        The given labels.
    n_classes : int, optional
        Checked against the views' column count when given.
    calibrate : bool
        Temperature-scale each view before weighing it (see above).
    seconds : mapping of name to float, optional
        Time each view took, copied into the report.
    settings : mapping of name to dict, optional
        What each view chose (e.g. :attr:`NoiseViews.settings`), copied into the report.

    Returns
    -------
    probs : np.ndarray, shape (n, n_classes)
        The mixture; rows sum to 1.
    report : EnsembleReport
        Per-view log loss and weight, the mixture's log loss and how the weights were found.
    """
    if not views:
        raise ValueError("need at least one view")
    names = list(views)
    stack = np.stack([np.asarray(views[name], dtype=np.float64) for name in names])
    y = np.asarray(labels, dtype=np.int64)
    if stack.shape[1] != y.shape[0] or (n_classes is not None and stack.shape[2] != n_classes):
        raise ValueError(f"views have shape {stack.shape[1:]}, expected ({y.shape[0]}, {n_classes or 'k'})")
    temperatures = {name: 1.0 for name in names}
    if calibrate and y.size:
        from training.calibration import apply_temperature, fit_temperature

        for v, name in enumerate(names):
            log_probs = np.log(np.maximum(stack[v], MISSING_CLASS_EPSILON))
            temperatures[name] = fit_temperature(log_probs, y)
            stack[v] = apply_temperature(log_probs, temperatures[name])
    losses = {name: log_loss_of(stack[v], y) for v, name in enumerate(names)}
    best = int(np.argmin([losses[name] for name in names]))
    weights: np.ndarray | None
    if len(names) == 1 or y.size == 0:
        weights, method = np.eye(len(names))[best], "single_view" if len(names) == 1 else "best_view"
    else:
        picked = stack[:, np.arange(y.size), y].T  # (n, n_views): each view's probability of the given label
        weights, method = _mixture_weights(picked), "min_log_loss"
        if weights is None or log_loss_of(np.tensordot(weights, stack, axes=1), y) > losses[names[best]]:
            weights, method = np.eye(len(names))[best], "best_view"
    mixed = np.tensordot(weights, stack, axes=1)
    mixed = mixed / mixed.sum(axis=1, keepdims=True)
    report = EnsembleReport(
        log_loss=losses,
        weights={name: float(w) for name, w in zip(names, weights, strict=True)},
        ensemble_log_loss=log_loss_of(mixed, y),
        method=method,
        seconds={name: float(seconds[name]) for name in names if seconds and name in seconds},
        settings={name: dict(settings[name]) for name in names if settings and name in settings},
        temperatures=temperatures,
    )
    return mixed, report


#: Largest labeled set for which :func:`finetune_affordable` allows fine-tuned folds on a CPU. Measured on
#: the project's 2-core machine (shared with other work): 5 fine-tunes (LP-FT, 2 epochs, max_length 128)
#: over 300 short texts took 551 s wall (406 s CPU), about 1.8 s per labeled example, where the whole
#: noise stage for 5,000 short texts without them takes under a minute; and on a few hundred examples a
#: fine-tuned fold learns from fewer than 250 texts. So a CPU worker leaves them out unless configured.
FINETUNE_CPU_MAX_EXAMPLES = 0

#: Largest labeled set for fine-tuned folds on a GPU: 5 folds over 2,225 BBC articles (max_length 256,
#: 4 epochs) took 136 s on an H200, so 20,000 short texts at 2 epochs stay within minutes.
FINETUNE_GPU_MAX_EXAMPLES = 20_000


def finetune_affordable(
    n_examples: int,
    *,
    on_gpu: bool,
    cpu_max: int = FINETUNE_CPU_MAX_EXAMPLES,
    gpu_max: int = FINETUNE_GPU_MAX_EXAMPLES,
) -> bool:
    """Whether fine-tuned folds fit in a train job: on a GPU up to ``gpu_max`` labeled examples, on a CPU
    up to ``cpu_max`` (see :data:`FINETUNE_CPU_MAX_EXAMPLES` for the measured cost).

    Parameters
    ----------
    n_examples : int
        Labeled examples the folds would cover.
    on_gpu : bool
        The worker trains on CUDA.
    cpu_max, gpu_max : int

    Returns
    -------
    bool
        Never for fewer than 10 examples (a fold would train on a handful).
    """
    if n_examples < 10:
        return False
    return n_examples <= (gpu_max if on_gpu else cpu_max)


def oos_probs_finetuned(
    texts: Sequence[str],
    labels: np.ndarray,
    label_names: Sequence[str],
    *,
    config: TrainConfig | None = None,
    k: int = 5,
    seed: int = 0,
    folds: Sequence[tuple[np.ndarray, np.ndarray]] | None = None,
    on_fold: Callable[[int, float], None] | None = None,
) -> np.ndarray:
    """Out-of-sample probabilities from fine-tuned encoder folds: one classifier trained per fold.

    The strongest single view when it can be afforded (on a GPU; on CPU only for small projects): each
    fold fine-tunes the encoder on the other folds' labels (:func:`training.train.train_classifier`) and
    predicts the held-out fold. Needs PyTorch (imported here, not when this module loads).

    Parameters
    ----------
    texts : sequence of str, length n
    labels : np.ndarray, shape (n,) int in [0, len(label_names))
    label_names : sequence of str, length n_classes
    config : training.train.TrainConfig, optional
        Default: full fine-tuning (LP-FT), 2 epochs, the default encoder, ``seed``.
    k, seed : int
        Folds and seed (see :func:`stratified_folds`).
    folds : optional precomputed ``(train_idx, test_idx)`` pairs (shared with other views).
    on_fold : callable ``(training examples, seconds) -> None``, optional
        Called after each fold (progress, logs).

    Returns
    -------
    np.ndarray, shape (n, n_classes)
        Rows sum to 1.
    """
    from training.train import TrainConfig, train_classifier

    names = list(label_names)
    y = np.asarray(labels, dtype=np.int64)
    if len(texts) != y.shape[0]:
        raise ValueError(f"{len(texts)} texts but {y.shape[0]} labels")
    train_config = config if config is not None else TrainConfig(mode="full", epochs=2, seed=seed)

    def fit_predict(train_idx: np.ndarray, test_idx: np.ndarray) -> np.ndarray:
        started = time.perf_counter()
        probs = np.zeros((len(test_idx), len(names)))
        seen = np.unique(y[train_idx])
        if seen.size == 1:
            probs[:, seen[0]] = 1.0
        else:
            model = train_classifier(
                [texts[i] for i in train_idx], [names[y[i]] for i in train_idx], names, config=train_config
            )
            probs = model.predict_proba([texts[i] for i in test_idx])
        if on_fold is not None:
            on_fold(len(train_idx), time.perf_counter() - started)
        return probs

    return oos_probs(fit_predict, y, len(names), k=k, seed=seed, folds=folds)


#: ``C`` values the ``frozen_lr`` view of :func:`label_noise_views` compares (dense, unit-scale embeddings).
EMBEDDING_C_GRID: tuple[float, ...] = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0)


@dataclass
class NoiseViews:
    """Out-of-fold probabilities of several views of the same labels (see :func:`label_noise_views`).

    Attributes
    ----------
    probs : dict of str to np.ndarray, each shape (n, n_classes)
    seconds : dict of str to float
        Wall-clock time per view.
    settings : dict of str to dict
        What each view chose for itself: ``C`` of the linear views, ``n_neighbors`` of ``knn``.
    """

    probs: dict[str, np.ndarray]
    seconds: dict[str, float]
    settings: dict[str, dict[str, Any]]


def label_noise_views(
    embeddings: np.ndarray,
    texts: Sequence[str],
    labels: np.ndarray,
    n_classes: int,
    *,
    k: int = 5,
    seed: int = 0,
    finetune: bool = False,
    label_names: Sequence[str] | None = None,
    finetune_config: TrainConfig | None = None,
) -> NoiseViews:
    """Every view's out-of-fold probabilities over one shared set of stratified folds.

    Views, each choosing its one setting by out-of-fold log loss:

    - ``frozen_lr``: logistic regression on the frozen embeddings, ``C`` from :data:`EMBEDDING_C_GRID`
      (:func:`oos_probs_logistic`);
    - ``knn``: leave-one-out cosine kNN on the same embeddings, neighbours from :data:`KNN_GRID`
      (:func:`oos_probs_knn`);
    - ``tfidf``: logistic regression on TF-IDF word and character n-grams, ``C`` from
      :data:`TFIDF_C_GRID` (:func:`oos_probs_tfidf`);
    - ``finetuned``, only when ``finetune``: fine-tuned encoder folds (:func:`oos_probs_finetuned`).

    Mix them with :func:`weighted_ensemble`.

    Parameters
    ----------
    embeddings : np.ndarray, shape (n, d)
        Frozen encoder embeddings of ``texts``.
    texts : sequence of str, length n
    labels : np.ndarray, shape (n,) int in [0, n_classes)
    n_classes : int
    k, seed : int
        Folds and seed (see :func:`stratified_folds`).
    finetune : bool
        Add fine-tuned folds (the caller decides whether they are affordable: a GPU, or few examples).
    label_names : sequence of str, optional
        Class names for the fine-tuned folds; default ``"0"``, ``"1"``, ...
    finetune_config : training.train.TrainConfig, optional
        Passed to :func:`oos_probs_finetuned`.

    Returns
    -------
    NoiseViews
    """
    y = np.asarray(labels, dtype=np.int64)
    x = np.asarray(embeddings, dtype=np.float64)
    if x.shape[0] != y.shape[0] or len(texts) != y.shape[0]:
        raise ValueError(f"{x.shape[0]} embeddings and {len(texts)} texts but {y.shape[0]} labels")
    folds = stratified_folds(y, k, seed)
    names = list(label_names) if label_names is not None else [str(i) for i in range(n_classes)]
    views = NoiseViews({}, {}, {})

    def frozen_lr() -> np.ndarray:
        probs, c = oos_probs_logistic(x, y, n_classes, C=EMBEDDING_C_GRID, folds=folds)
        views.settings["frozen_lr"] = {"C": c}
        return probs

    def knn() -> np.ndarray:
        probs, count = _knn_probs(x, y, n_classes, "auto", 0.1, None)
        views.settings["knn"] = {"n_neighbors": count}
        return probs

    def tfidf() -> np.ndarray:
        features = tfidf_features(texts)
        if features.shape[1] == 0:
            views.settings["tfidf"] = {"n_features": 0}
            return np.full((y.shape[0], n_classes), 1.0 / n_classes)
        probs, c = oos_probs_logistic(features, y, n_classes, C=TFIDF_C_GRID, folds=folds)
        views.settings["tfidf"] = {"C": c, "n_features": int(features.shape[1])}
        return probs

    def finetuned() -> np.ndarray:
        return oos_probs_finetuned(texts, y, names, config=finetune_config, seed=seed, folds=folds)

    makers: dict[str, Callable[[], np.ndarray]] = {"frozen_lr": frozen_lr, "knn": knn, "tfidf": tfidf}
    if finetune:
        makers["finetuned"] = finetuned
    for name, make in makers.items():
        started = time.perf_counter()
        views.probs[name] = make()
        views.seconds[name] = round(time.perf_counter() - started, 3)
    return views
