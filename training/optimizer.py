"""Optimisation: which parameters train in which phase, at which learning rate, with or without weight decay.

- **Phases.** ``"frozen"`` trains the head alone; ``"full"`` trains everything in one phase; ``"gradual"``
  starts with the head, then unfreezes ``unfreeze_layers_per_phase`` more transformer layers from the top per
  phase, the last phase with everything (the embeddings included); ``"lora"`` trains the adapter matrices
  and the head. Each phase gets a fresh optimizer and schedule.
- **Learning rates.** Encoder units (``embeddings``, ``layer.0`` .. top) get ``encoder_lr``; in
  ``"gradual"`` mode a unit ``d`` layers below the top gets ``encoder_lr * layer_lr_decay ** d``
  (discriminative rates). The head gets its own, higher rate.
- **Weight decay.** AdamW's decoupled decay on weight matrices only: never on biases or on the weights of
  normalisation layers (LayerNorm and anything named ``*Norm*``).
- **Schedule.** Linear warm-up over ``warmup_ratio`` of a phase's optimizer steps, then linear decay to 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from training.encoder import model_config
from training.heads import TextClassifier
from training.train_config import TrainConfig

try:
    import torch
    from torch import nn
    from transformers import get_linear_schedule_with_warmup
except ImportError as exc:  # pragma: no cover - exercised only on a broken install
    raise ImportError(
        "training.optimizer needs PyTorch and transformers (pip install torch transformers)."
    ) from exc


#: The head's parameters: a unit of its own, trained in every phase of every mode.
HEAD_UNIT: dict[str, list[str]] = {"head": ["head.weight", "head.bias"]}


def _is_no_decay(module: nn.Module, param_name: str) -> bool:
    return (
        param_name.endswith("bias")
        or isinstance(module, nn.LayerNorm)
        or "norm" in type(module).__name__.lower()
    )


def no_decay_names(model: nn.Module) -> set[str]:
    """Names of the parameters trained without weight decay: biases and normalisation-layer weights."""
    names: set[str] = set()
    for module_name, module in model.named_modules():
        for param_name, _ in module.named_parameters(recurse=False):
            if _is_no_decay(module, param_name):
                names.add(f"{module_name}.{param_name}" if module_name else param_name)
    return names


def _layer_stack(classifier: TextClassifier) -> tuple[str, int]:
    """Name (within the classifier) and size of the encoder's stack of transformer layers."""
    n_layers = getattr(model_config(classifier.encoder), "num_hidden_layers", None)
    candidates = [
        (name, len(module))
        for name, module in classifier.encoder.named_modules()
        if isinstance(module, nn.ModuleList) and len(module) > 0
    ]
    for name, size in candidates:
        if size == n_layers:
            return f"encoder.{name}", size
    if candidates:
        name, size = max(candidates, key=lambda c: c[1])
        return f"encoder.{name}", size
    raise ValueError("cannot find the encoder's layer stack for gradual unfreezing")


def _encoder_units(classifier: TextClassifier) -> tuple[list[str], dict[str, list[str]]]:
    """Encoder parameters grouped bottom-up: ``embeddings`` (all outside the stack), ``layer.0`` .. top."""
    stack, n_layers = _layer_stack(classifier)
    units: dict[str, list[str]] = {"embeddings": [], **{f"layer.{i}": [] for i in range(n_layers)}}
    for name, _ in classifier.named_parameters():
        if not name.startswith("encoder."):
            continue
        if name.startswith(stack + "."):
            index = int(name[len(stack) + 1 :].split(".", 1)[0])
            units[f"layer.{index}"].append(name)
        else:
            units["embeddings"].append(name)
    return list(units), units


@dataclass
class Phase:
    """One stretch of training with a fixed set of trainable units, its own optimizer and schedule."""

    name: str
    epochs: int
    lrs: dict[str, float]  # unit -> peak learning rate
    units: dict[str, list[str]]  # unit -> parameter names


def head_phase(config: TrainConfig) -> Phase:
    """The one phase of a frozen-encoder head (``"frozen"`` mode and the LP-FT probe)."""
    return Phase("head", config.frozen_epochs, {"head": config.frozen_head_lr}, dict(HEAD_UNIT))


def phases(classifier: TextClassifier, mode: str, config: TrainConfig) -> list[Phase]:
    """The phases of a fine-tuning mode (``"gradual"``, ``"full"`` or ``"lora"``), in training order."""
    head = dict(HEAD_UNIT)
    if mode == "lora":
        lora = [n for n, p in classifier.named_parameters() if "lora_" in n]
        return [
            Phase(
                "lora",
                config.epochs,
                {"lora": config.lora_lr, "head": config.head_lr},
                {"lora": lora, **head},
            )
        ]
    order, units = _encoder_units(classifier)
    if mode == "full":
        lrs = {u: config.encoder_lr for u in order} | {"head": config.head_lr}
        return [Phase("full", config.epochs, lrs, units | head)]
    # gradual: head alone, then the top layers, then more, the last phase with everything.
    layers = order[1:]  # bottom -> top
    n_layers = len(layers)
    depth = {u: n_layers - 1 - i for i, u in enumerate(layers)} | {"embeddings": n_layers}
    counts = list(range(0, n_layers, config.unfreeze_layers_per_phase)) + [n_layers]
    n_phases = len(counts)
    out: list[Phase] = []
    for p, count in enumerate(counts):
        unfrozen = layers[n_layers - count :] if count else []
        if count == n_layers:
            unfrozen = ["embeddings", *unfrozen]
        last = p == n_phases - 1
        epochs = (
            max(1, config.epochs - config.gradual_epochs_per_phase * (n_phases - 1))
            if last
            else (config.gradual_epochs_per_phase)
        )
        lrs = {u: config.encoder_lr * config.layer_lr_decay ** depth[u] for u in unfrozen} | {
            "head": config.head_lr
        }
        out.append(
            Phase(
                "head" if count == 0 else ("all" if count == n_layers else f"top{count}"),
                epochs,
                lrs,
                {u: units[u] for u in unfrozen} | head,
            )
        )
    return out


def param_groups(
    classifier: TextClassifier, phase: Phase, weight_decay: float
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """AdamW parameter groups for a phase: per unit, weights with decay and biases/norms without."""
    params = dict(classifier.named_parameters())
    no_decay = no_decay_names(classifier)
    groups: list[dict[str, Any]] = []
    summary: list[dict[str, Any]] = []
    for unit, names in phase.units.items():
        for suffix, decay, selected in (
            ("", weight_decay, [n for n in names if n not in no_decay]),
            (".no_decay", 0.0, [n for n in names if n in no_decay]),
        ):
            if not selected:
                continue
            groups.append(
                {
                    "params": [params[n] for n in selected],
                    "lr": phase.lrs[unit],
                    "weight_decay": decay,
                    "name": unit + suffix,
                    "unit": unit,
                }
            )
            summary.append(
                {
                    "phase": phase.name,
                    "name": unit + suffix,
                    "lr": phase.lrs[unit],
                    "weight_decay": decay,
                    "params": selected,
                }
            )
    return groups, summary


def set_trainable(classifier: TextClassifier, names: set[str]) -> None:
    """Freeze every parameter but ``names``."""
    for name, param in classifier.named_parameters():
        param.requires_grad_(name in names)


def linear_schedule(optimizer: torch.optim.Optimizer, total_steps: int, warmup_ratio: float) -> Any:
    """Linear warm-up over ``warmup_ratio`` of ``total_steps`` (rounded up), then linear decay to 0."""
    warmup = int(math.ceil(warmup_ratio * total_steps)) if warmup_ratio > 0 else 0
    return get_linear_schedule_with_warmup(optimizer, num_warmup_steps=warmup, num_training_steps=total_steps)


def step_entry(
    step: int, phase: str, epoch: int, loss: float, grad_norm: Any, optimizer: torch.optim.Optimizer
) -> dict[str, Any]:
    """One line of the per-step training log: loss, gradient norm and the learning rates in force."""
    return {
        "step": step,
        "phase": phase,
        "epoch": epoch,
        "loss": loss,
        "grad_norm": float(grad_norm),
    } | _lr_entry(optimizer)


def _lr_entry(optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    lrs: dict[str, float] = {}
    for group in optimizer.param_groups:
        lrs.setdefault(group["unit"], float(group["lr"]))
    encoder_lrs = [lr for unit, lr in lrs.items() if unit != "head"]
    return {"lr": lrs, "lr_head": lrs.get("head"), "lr_encoder": max(encoder_lrs) if encoder_lrs else None}


def windows(order: np.ndarray, batch_size: int, accum: int) -> list[list[np.ndarray]]:
    """Micro-batches of ``order`` grouped into optimizer steps of ``accum`` micro-batches."""
    micro = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    return [micro[i : i + accum] for i in range(0, len(micro), accum)]
