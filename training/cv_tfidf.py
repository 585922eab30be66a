"""The lexical view of the labels: logistic regression on TF-IDF word and character n-grams, out of fold.

A model of the surface words, with none of the encoder's knowledge, so its mistakes differ from the
embedding views' mistakes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer

from training.cv_logistic import oos_probs_logistic

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

