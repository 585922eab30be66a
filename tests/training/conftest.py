"""Shared fixtures for tests of the framework-free ML core (no database, no Django).

- ``tiny_dataset``: 36 short single-label texts over 3 easy classes, with a fixed train/val split.
- ``tiny_multilabel_dataset``: 30 short texts tagged with one or two of the same 3 classes.
- ``default_model_dir``: the bundled MiniLM-L6 directory (offline).
- ``minilm_encoder``: one MiniLM encoder at ``max_length=32`` shared by the session (read-only:
  do not train it or change its settings).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Any

import pytest

# Models are never downloaded: everything is loaded from local directories.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

LABEL_NAMES = ["sports", "food", "tech"]

_TOPICS: dict[str, tuple[list[str], list[str]]] = {
    "sports": (
        [
            "The striker",
            "Our goalkeeper",
            "The tennis champion",
            "The rugby team",
            "The sprinter",
            "The coach",
        ],
        ["scored twice in the final match", "won the league title", "trained hard before the tournament"],
    ),
    "food": (
        ["The chef", "My grandmother", "The bakery", "This restaurant", "The pastry cook", "Our kitchen"],
        ["baked fresh bread with garlic", "cooked a spicy vegetable soup", "served pasta with tomato sauce"],
    ),
    "tech": (
        [
            "The software update",
            "The new laptop",
            "The startup",
            "The smartphone",
            "The database server",
            "The chip",
        ],
        [
            "crashed after installing drivers",
            "ships a faster processor and more memory",
            "encrypts data in the cloud",
        ],
    ),
}


@dataclass(frozen=True)
class TinyDataset:
    """A small labeled text set with a fixed split; ``labels`` are names (or lists of names)."""

    texts: list[str]
    labels: list[Any]
    label_names: list[str]
    train_texts: list[str]
    train_labels: list[Any]
    val_texts: list[str]
    val_labels: list[Any]


def _single_label() -> tuple[list[str], list[str]]:
    texts: list[str] = []
    labels: list[str] = []
    for label, (subjects, predicates) in _TOPICS.items():
        for i in range(12):
            texts.append(f"{subjects[i % len(subjects)]} {predicates[i % len(predicates)]}.")
            labels.append(label)
    return texts, labels


def _split(texts: list[str], labels: list[Any], every: int) -> TinyDataset:
    val_rows = {i for i in range(len(texts)) if i % every == every - 1}
    return TinyDataset(
        texts=texts,
        labels=labels,
        label_names=list(LABEL_NAMES),
        train_texts=[t for i, t in enumerate(texts) if i not in val_rows],
        train_labels=[y for i, y in enumerate(labels) if i not in val_rows],
        val_texts=[t for i, t in enumerate(texts) if i in val_rows],
        val_labels=[y for i, y in enumerate(labels) if i in val_rows],
    )


@pytest.fixture(scope="session")
def tiny_dataset() -> TinyDataset:
    """36 texts, 12 per class; every 4th text (3 per class) is validation."""
    texts, labels = _single_label()
    return _split(texts, labels, every=4)


@pytest.fixture(scope="session")
def tiny_multilabel_dataset() -> TinyDataset:
    """30 texts: 18 with one topic, 12 mixing two topics; every 3rd text is validation."""
    texts, single = _single_label()
    multi_texts: list[str] = []
    multi_labels: list[list[str]] = []
    for i in range(0, 36, 2):
        multi_texts.append(texts[i])
        multi_labels.append([single[i]])
    pairs = [("sports", "food"), ("food", "tech"), ("sports", "tech")]
    for i in range(12):
        a, b = pairs[i % 3]
        sa, pa = _TOPICS[a]
        sb, pb = _TOPICS[b]
        multi_texts.append(f"{sa[i % 6]} {pa[i % 3]}, and then {sb[(i + 1) % 6].lower()} {pb[(i + 2) % 3]}.")
        multi_labels.append([a, b])
    return _split(multi_texts, multi_labels, every=3)


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread() -> None:
    """Run PyTorch on one intra-op thread in tests.

    The development machines have 2 cores shared with other processes; under that contention
    OpenMP's spin-waiting makes 2 threads several times slower than 1 (measured: 0.85 s vs 0.10 s
    for one MiniLM batch). Set RELABEL_TEST_TORCH_THREADS to change it.
    """
    torch = sys.modules.get("torch")  # only when collected tests use it: numpy-only runs skip the import
    if torch is not None:
        torch.set_num_threads(int(os.environ.get("RELABEL_TEST_TORCH_THREADS", "1")))


@pytest.fixture(scope="session")
def default_model_dir() -> str:
    """The bundled MiniLM-L6 model directory."""
    pytest.importorskip("torch")
    from training.encoder import default_model_dir as _default_model_dir

    return _default_model_dir()


@pytest.fixture(scope="session")
def minilm_encoder(default_model_dir: str) -> Any:
    """A MiniLM encoder with ``max_length=32`` and mean pooling, shared read-only by the session."""
    from training.encoder import Encoder, EncoderConfig

    return Encoder(EncoderConfig(model_dir=default_model_dir, max_length=32))
