"""The settings of a training run: :class:`TrainConfig` and how ``"auto"`` resolves to a mode and a device."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

from training.encoder import EncoderConfig
from training.modes import MODES

try:
    import torch
except ImportError as exc:  # pragma: no cover - exercised only on a broken install
    raise ImportError("training.train_config needs PyTorch (pip install torch).") from exc


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of :func:`train_classifier`.

    Attributes
    ----------
    mode:
        ``"auto"`` picks by labeled-set size: fewer than ``auto_frozen_below`` labels -> ``"frozen"``,
        more than ``auto_full_above`` -> ``"full"``, otherwise ``"gradual"``. Or one of
        ``"frozen"``, ``"gradual"``, ``"full"``, ``"lora"``.
    encoder:
        Encoder directory and preprocessing (max_length, truncation side, pooling, lower-casing).
    encoder_lr:
        Peak encoder learning rate; 2e-5 .. 5e-5 is the usual range for BERT-family models. In
        ``"gradual"`` mode it applies to the top layer and decays by ``layer_lr_decay`` per layer below.
    head_lr:
        Peak learning rate of the linear head while fine-tuning (higher than the encoder's: it
        starts from random weights).
    frozen_head_lr:
        Peak learning rate of the head in ``"frozen"`` mode (only the head trains, so it can be high).
    lora_lr:
        Peak learning rate of the LoRA adapter matrices.
    weight_decay:
        AdamW decoupled weight decay on weight matrices; never on biases or LayerNorm weights.
    warmup_ratio:
        Share of a phase's optimizer steps spent warming up linearly from 0.
    epochs:
        Fine-tuning epochs (``"gradual"``: all phases together, at least one per phase).
    frozen_epochs:
        Maximum head epochs in ``"frozen"`` mode (cheap: embeddings are computed once).
    batch_size, frozen_batch_size, eval_batch_size:
        Examples per micro-batch when fine-tuning, when training a frozen-mode head, and when
        predicting.
    grad_accum_steps:
        Micro-batches per optimizer step.
    max_grad_norm:
        Gradient clipping threshold (total L2 norm).
    dropout:
        Dropout before the linear head.
    frozen_heads, frozen_crossfit_below:
        ``"frozen"`` mode (and the LP-FT probe) with fewer than ``frozen_crossfit_below`` training
        examples averages ``frozen_heads`` cross-fit heads, each stopped early on its own fold of the
        training data (see :func:`crossfit_folds`); ``frozen_heads=1`` trains one head stopped on the
        validation split.
    patience, frozen_patience:
        Epochs without a validation macro-F1 improvement before stopping (fine-tuning / frozen).
    layer_lr_decay:
        Discriminative learning rates in ``"gradual"`` mode: a layer ``d`` layers below the top
        gets ``encoder_lr * layer_lr_decay ** d``; the embeddings count as the lowest layer.
    unfreeze_layers_per_phase:
        ``"gradual"``: phase 0 trains the head alone, each later phase unfreezes this many more
        layers from the top; the last phase unfreezes everything.
    gradual_epochs_per_phase:
        Epochs of every phase but the last, which gets the remaining epochs.
    lora_r, lora_alpha, lora_dropout, lora_target_modules:
        LoRA adapter settings (peft ``LoraConfig``); BERT's attention projections are named
        ``query``/``key``/``value``.
    val_fraction:
        Share held out (stratified) for validation when no validation set is given.
    seed:
        Seeds Python, NumPy and PyTorch, the validation split and batch order.
    linear_probe:
        Fine-tuning modes first fit the head on frozen embeddings, as ``"frozen"`` mode does (LP-FT,
        Kumar et al. 2022): the encoder then starts from a trained head instead of a random one,
        which distorts the pretrained features less, and the probe counts as epoch 0 for early
        stopping, so a fine-tune never keeps weights that validate worse than the frozen encoder.
    device:
        Where the encoder runs while training: ``"auto"`` (CUDA when available, else CPU), ``"cpu"``,
        ``"cuda"`` or ``"cuda:N"``. The trained model is always returned on the CPU, so artifacts
        and serving do not depend on the training machine.
    """

    mode: str = "auto"
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    auto_frozen_below: int = 500
    auto_full_above: int = 10_000
    encoder_lr: float = 3e-5
    head_lr: float = 1e-3
    frozen_head_lr: float = 1e-2
    lora_lr: float = 5e-4
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    epochs: int = 4
    frozen_epochs: int = 100
    batch_size: int = 16
    frozen_batch_size: int = 32
    eval_batch_size: int = 64
    grad_accum_steps: int = 1
    max_grad_norm: float = 1.0
    dropout: float = 0.1
    patience: int = 2
    frozen_patience: int = 20
    frozen_heads: int = 5
    frozen_crossfit_below: int = 2000
    layer_lr_decay: float = 0.9
    unfreeze_layers_per_phase: int = 2
    gradual_epochs_per_phase: int = 1
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.1
    lora_target_modules: tuple[str, ...] = ("query", "value")
    val_fraction: float = 0.15
    seed: int = 0
    linear_probe: bool = True
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        positive = {
            "encoder_lr": self.encoder_lr,
            "head_lr": self.head_lr,
            "frozen_head_lr": self.frozen_head_lr,
            "lora_lr": self.lora_lr,
            "epochs": self.epochs,
            "frozen_epochs": self.frozen_epochs,
            "batch_size": self.batch_size,
            "frozen_batch_size": self.frozen_batch_size,
            "eval_batch_size": self.eval_batch_size,
            "grad_accum_steps": self.grad_accum_steps,
            "max_grad_norm": self.max_grad_norm,
            "patience": self.patience,
            "frozen_patience": self.frozen_patience,
            "frozen_heads": self.frozen_heads,
            "frozen_crossfit_below": self.frozen_crossfit_below,
            "unfreeze_layers_per_phase": self.unfreeze_layers_per_phase,
            "gradual_epochs_per_phase": self.gradual_epochs_per_phase,
            "lora_r": self.lora_r,
        }
        for name, value in positive.items():
            if not value > 0:
                raise ValueError(f"{name} must be > 0, got {value!r}")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ValueError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if not 0.0 < self.layer_lr_decay <= 1.0:
            raise ValueError(f"layer_lr_decay must be in (0, 1], got {self.layer_lr_decay}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if not 0 < self.auto_frozen_below <= self.auto_full_above:
            raise ValueError("need 0 < auto_frozen_below <= auto_full_above")
        if not (self.device in ("auto", "cpu", "cuda") or re.fullmatch(r"cuda:\d+", self.device)):
            raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {self.device!r}")

    def resolve_device(self) -> torch.device:
        """The torch device to train on (``"auto"``: CUDA when available)."""
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        device = torch.device(self.device)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {self.device!r} asked for, but CUDA is not available")
        return device

    def resolve_mode(self, n_labeled: int) -> str:
        """The mode to train with for ``n_labeled`` labeled examples."""
        if self.mode != "auto":
            return self.mode
        if n_labeled < self.auto_frozen_below:
            return "frozen"
        if n_labeled > self.auto_full_above:
            return "full"
        return "gradual"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready settings (``training_config.json``)."""
        out = asdict(self)
        out["lora_target_modules"] = list(self.lora_target_modules)
        return out
