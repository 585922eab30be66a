"""The training modes, in one place.

This module imports nothing heavy, so the web process can validate a project's mode (and the API can list
the choices) without loading PyTorch. :class:`~training.train_config.TrainConfig` documents what each mode
does and how ``"auto"`` picks one.
"""

from __future__ import annotations

#: Every mode a caller may ask for; ``"auto"`` picks one of the others by labeled-set size.
MODES: tuple[str, ...] = ("auto", "frozen", "gradual", "full", "lora")

#: The modes that update the encoder's weights (the others train only the linear head).
FINE_TUNE_MODES: tuple[str, ...] = ("gradual", "full", "lora")
