"""The frozen-encoder loops: a linear head trained on fixed embeddings, alone or as cross-fit heads.

``"frozen"`` mode is this and nothing else; the fine-tuning modes run it first as the LP-FT probe (see
:mod:`training.finetune`). The encoder embeds every text once (through the embedding cache when there is
one), then only the head trains, over the embeddings, on the head's device.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from training.data import stratified_folds
from training.heads import TextClassifier, head_logits, macro_f1
from training.optimizer import HEAD_UNIT, head_phase, linear_schedule, param_groups, set_trainable, step_entry
from training.run_state import BestEpoch, RunState, loss_fn, snapshot, targets, val_loss
from training.train_config import TrainConfig

try:
    import torch
except ImportError as exc:  # pragma: no cover - exercised only on a broken install
    raise ImportError("training.frozen needs PyTorch (pip install torch).") from exc

#: Fewest training examples per fold of the cross-fit frozen heads (a fold also stops its head early).
MIN_PER_HEAD_FOLD = 10


@dataclass
class HeadData:
    """What one head trains on and stops early on, as embeddings.

    Attributes
    ----------
    x_train:
        ``(n, hidden)`` training embeddings, on the head's device.
    targets:
        Their ``n`` loss targets (see :func:`~training.run_state.targets`), on the head's device.
    x_stop, y_stop:
        ``(m, hidden)`` embeddings and ``m`` encoded labels that pick the head's best epoch.
    """

    x_train: torch.Tensor
    targets: torch.Tensor
    x_stop: np.ndarray
    y_stop: np.ndarray


def crossfit_folds(y_train: np.ndarray, config: TrainConfig) -> list[tuple[np.ndarray, np.ndarray]]:
    """The folds of the cross-fit frozen heads, or ``[]`` for one head stopped on the validation split.

    Cross-fitting pays off where early stopping is noisy: below ``frozen_crossfit_below`` training
    examples, with at least ``MIN_PER_HEAD_FOLD`` examples in every fold. Multi-label rows are
    stratified by their first label.
    """
    n = len(y_train)
    k = min(config.frozen_heads, n // MIN_PER_HEAD_FOLD)
    if k < 2 or n >= config.frozen_crossfit_below:
        return []
    strata = y_train if y_train.ndim == 1 else np.argmax(y_train, axis=1)
    return stratified_folds(strata, k, config.seed)


def fit_head(
    run: RunState, data: HeadData, *, seed: int, head: int | None, at: Callable[[float], float]
) -> int:
    """Train ``run.model.head`` from its current weights, keep its best epoch on ``data.x_stop``; the best epoch.

    ``head`` numbers the cross-fit head in the epoch and step logs (``None`` for a single head); ``at``
    maps this head's progress in [0, 1] into the run's.
    """
    model, config, task, log = run.model, run.config, run.task, run.log
    criterion = loss_fn(task)
    groups, summary = param_groups(model, head_phase(config), config.weight_decay)
    if head in (None, 0):
        log.optimizer_groups.extend(summary)
    optimizer = torch.optim.AdamW(groups)
    windows_per_epoch = math.ceil(len(data.x_train) / config.frozen_batch_size)
    scheduler = linear_schedule(optimizer, windows_per_epoch * config.frozen_epochs, config.warmup_ratio)
    rng = np.random.default_rng(seed)
    step = len(log.steps)
    tag = {} if head is None else {"head": head}
    model.dropout.train()
    with one_thread_on_cpu(data.x_train.device):
        best = _epochs(run, data, optimizer, scheduler, criterion, rng, windows_per_epoch, step, tag, head, at)
    model.dropout.eval()
    assert best.state is not None  # at least one epoch ran
    model.head.load_state_dict(best.state)
    return best.epoch


@contextlib.contextmanager
def one_thread_on_cpu(device: torch.device) -> Iterator[None]:
    """Run a linear head's steps on one CPU thread: its matrices are a few dozen rows by a few hundred
    columns, where a second thread only adds synchronisation, and on a busy machine (a worker beside the
    web server and the database) its spin-waits made the same epochs 8x slower (116 s against 15 s for
    five cross-fit heads on 255 labels, load average 8 on 2 cores)."""
    if device.type != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _epochs(run: RunState, data: HeadData, optimizer: torch.optim.Optimizer, scheduler: Any, criterion: Any,
            rng: np.random.Generator, windows_per_epoch: int, step: int, tag: dict[str, int], head: int | None,
            at: Callable[[float], float]) -> BestEpoch:
    model, config, task, tracker, log = run.model, run.config, run.task, run.tracker, run.log
    best = BestEpoch()
    for epoch in range(1, config.frozen_epochs + 1):
        losses = []
        for rows in np.array_split(rng.permutation(len(data.x_train)), windows_per_epoch):
            tracker.check()
            loss = criterion(model.classify(data.x_train[rows]), data.targets[rows])
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.head.parameters(), config.max_grad_norm)
            loss_value = float(loss.detach())
            log.steps.append(step_entry(step, "head", epoch, loss_value, grad_norm, optimizer) | tag)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(loss_value)
            step += 1
        stop_logits = head_logits(model.head, data.x_stop)
        f1, stop_loss = macro_f1(data.y_stop, stop_logits, task), val_loss(stop_logits, data.y_stop, task)
        log.epochs.append(
            {
                "epoch": epoch,
                "phase": "head",
                "train_loss": float(np.mean(losses)),
                "val_loss": stop_loss,
                "val_macro_f1": f1,
            }
            | tag
        )
        best.update(f1, stop_loss, epoch, model.head)
        which = "" if head is None else f"head {head + 1}, "
        tracker.report(
            at(epoch / config.frozen_epochs), "training", f"{which}epoch {epoch}: val macro-F1 {f1:.3f}"
        )
        if epoch - best.epoch >= config.frozen_patience:
            break
    return best


def train_frozen(run: RunState, span: tuple[float, float] = (0.0, 1.0)) -> tuple[float, float]:
    """Train the linear head on frozen embeddings; ``span`` maps this stage's progress into the run's.

    Returns the kept head's validation macro-F1 and loss.

    With few labels (see :func:`crossfit_folds`) the head is the average of ``k`` cross-fit heads:
    each trains on ``k - 1`` folds of the training data and stops early on the remaining one. Early
    stopping on a validation split of a few dozen examples picks its epoch noisily, and one head's
    predictions then move by more between versions than the new labels justify; averaging heads that
    each stopped on different data lowers that variance (bagging), uses every training example for
    training, and stays one linear layer (the mean of linear heads' logits is the logits of their mean
    weights), so serving is unchanged. Measured on BBC headlines with 10% flipped labels, 3 repeats
    of 100-500 random labels: test macro-F1 +0.01 to +0.05 below 250 labels, its spread at 200 labels
    0.005 instead of 0.023, and 1-2 s more per version.
    """
    model, config = run.model, run.config

    def at(fraction: float) -> float:
        return span[0] + (span[1] - span[0]) * fraction

    def _embed(texts: Sequence[str], start: float, end: float, what: str) -> np.ndarray:
        progress = run.tracker.embed_progress(at(start), at(end), what)
        bs = config.eval_batch_size
        if run.cache is not None:
            return run.encoder.embed_cached(texts, run.cache, batch_size=bs, progress=progress)
        return run.encoder.embed(texts, batch_size=bs, progress=progress)

    head_device = model.head.weight.device
    train_embeddings = _embed(run.train_texts, 0.0, 0.5, "training texts")
    x_train = torch.from_numpy(train_embeddings).to(head_device)
    x_val = _embed(run.val_texts, 0.5, 0.6, "validation texts")
    y_train = run.y_train
    train_targets = targets(y_train, run.task).to(head_device)
    head_names = set(HEAD_UNIT["head"])
    set_trainable(model, head_names)
    run.log.trainable.update(head_names)
    folds = crossfit_folds(y_train, config)
    if not folds:
        run.log.best_epoch = fit_head(
            run, HeadData(x_train, train_targets, x_val, run.y_val),
            seed=config.seed, head=None, at=lambda f: at(0.6 + 0.35 * f),
        )  # fmt: skip
        return head_scores(model, x_val, run.y_val, run.task)
    initial = snapshot(model.head)
    states, epochs = [], []
    for i, (fit_rows, stop_rows) in enumerate(folds):
        model.head.load_state_dict(initial)
        data = HeadData(
            x_train[fit_rows], train_targets[fit_rows], train_embeddings[stop_rows], y_train[stop_rows]
        )

        def head_at(fraction: float, i: int = i) -> float:
            return at(0.6 + 0.35 * (i + fraction) / len(folds))

        epochs.append(fit_head(run, data, seed=config.seed + i, head=i, at=head_at))
        states.append(snapshot(model.head))
    model.head.load_state_dict({name: torch.stack([s[name] for s in states]).mean(0) for name in initial})
    run.log.best_epoch = round(float(np.mean(epochs)))
    return head_scores(model, x_val, run.y_val, run.task)


def head_scores(
    model: TextClassifier, x_val: np.ndarray, y_val: np.ndarray, task: str
) -> tuple[float, float]:
    """Validation macro-F1 and loss of ``model.head`` over fixed embeddings."""
    logits = head_logits(model.head, x_val)
    return macro_f1(y_val, logits, task), val_loss(logits, y_val, task)
