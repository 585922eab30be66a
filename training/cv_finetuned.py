"""The fine-tuned view of the labels: one encoder fine-tuned per fold, and whether a worker can afford it.

Needs PyTorch, imported when the folds run (:func:`oos_probs_finetuned`), not when this module loads.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from training.cv import oos_probs

if TYPE_CHECKING:
    from training.train import TrainConfig


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

