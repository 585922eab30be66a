"""Model versions on disk: one immutable, self-contained, hash-verified directory each.

Layout of a version directory (every file but ``manifest.json`` is listed in it with its sha256)::

    model.safetensors     encoder and head weights (float32; keys ``encoder.*`` and ``head.*``).
                          Every mode stores the full encoder: frozen versions repeat the base weights
                          and LoRA versions store the adapters merged into them, so loading never needs
                          the base model directory or peft.
    config.json           the encoder's Hugging Face config
    tokenizer.json, tokenizer_config.json, ...   the tokenizer files
    preprocessing.json    max_length, truncation_side, pooling, lowercase (always applied on load)
    labels.json           task, label_names, label_to_index
    calibration.json      temperature and multi-label thresholds
    metrics.json          validation metrics plus the caller's metrics
    training_config.json  training settings, resolved mode, best epoch, base model
    training_log.json     per-step and per-epoch log, optimizer groups
    extra.json            the caller's extra record (e.g. the annotation snapshot it was trained on)
    serving.json          optional: the serving backend measurements and choice
    encoder.onnx | encoder.int8.onnx   optional: the graph of a chosen ONNX backend
    manifest.json         sha256 per file, sizes, and the content hash over all of them

:func:`save_artifact` builds the directory under a temporary name next to the target and renames it
into place, so a reader sees a complete version or none. :func:`load_artifact` refuses a directory
whose files do not match the manifest.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from training.backends import (
    BACKENDS,
    ONNX_FILES,
    onnxruntime_available,
    write_onnx,
)
from training.encoder import Encoder, EncoderConfig, model_config
from training.heads import TextClassifier
from training.predictor import Prediction, Predictor, embedding_key  # noqa: F401 - re-exported
from training.trained_model import TrainedModel

try:
    import torch
    from safetensors.torch import load_model, save_model
    from transformers import AutoConfig, AutoModel, AutoTokenizer
except ImportError as exc:  # pragma: no cover - exercised only on a broken install
    raise ImportError(
        "training.artifacts needs PyTorch, transformers and safetensors (pip install torch transformers safetensors)."
    ) from exc

FORMAT = "relabel-model-version"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
WEIGHTS = "model.safetensors"

logger = logging.getLogger(__name__)


class ArtifactIntegrityError(Exception):
    """A model version directory is incomplete or was modified after it was written."""


# --------------------------------------------------------------------------------------------- saving


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, set | frozenset | tuple):
        return sorted(value) if isinstance(value, set | frozenset) else list(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def _write_json(path: Path, payload: Any) -> None:
    path.write_text(json.dumps(payload, indent=2, sort_keys=True, default=_json_default) + "\n")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _content_hash(files: Mapping[str, str]) -> str:
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(f"{name}\0{files[name]}\n".encode())
    return digest.hexdigest()


def _listing(directory: Path) -> list[str]:
    return sorted(p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file())


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_artifact(
    model: TrainedModel,
    directory: str | Path,
    *,
    metrics: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
    serving: Mapping[str, Any] | None = None,
) -> str:
    """Write a model version directory atomically.

    Parameters
    ----------
    model:
        The trained model (its ``temperature`` and ``thresholds`` are stored as calibration).
    directory:
        Target directory; it must not exist yet (versions are never overwritten).
    metrics:
        Extra metrics for ``metrics.json`` (e.g. calibration ECE, per-class scores); the
        validation metrics from training are always included under ``"validation"``.
    extra:
        Caller's record for ``extra.json`` (e.g. the annotation snapshot it was trained on).
    serving:
        A :func:`~training.serving.choose_serving_backend` record; its ``backend`` is what
        :func:`load_artifact` will serve with (an ONNX choice stores the graph in the version).

    Returns
    -------
    str
        The content hash (sha256 over every file's name and sha256).
    """
    target = Path(directory)
    if target.exists():
        raise FileExistsError(f"{target} already exists; model versions are immutable")
    if serving is not None and serving.get("backend") not in BACKENDS:
        raise ValueError(f"serving['backend'] must be one of {BACKENDS}")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent))
    try:
        encoder = model.encoder
        save_model(model.classifier, str(staging / WEIGHTS), metadata={"format": "pt"})
        model_config(encoder.model).save_pretrained(staging)
        encoder.tokenizer.save_pretrained(staging)
        _write_json(staging / "preprocessing.json", encoder.config.preprocessing())
        _write_json(
            staging / "labels.json",
            {
                "task": model.task,
                "label_names": model.label_names,
                "label_to_index": {name: i for i, name in enumerate(model.label_names)},
            },
        )
        _write_json(
            staging / "calibration.json",
            {
                "temperature": float(model.temperature),
                "thresholds": model.thresholds,
                "thresholds_apply_to": "uncalibrated probabilities sigmoid(logits)",
            },
        )
        _write_json(staging / "metrics.json", {"validation": model.val_metrics, **dict(metrics or {})})
        _write_json(
            staging / "training_config.json",
            {
                "config": model.config.to_dict(),
                "mode": model.mode,
                "task": model.task,
                "best_epoch": model.best_epoch,
                "val_source": model.val_source,
                "seconds": model.seconds,
                "base_model": {
                    "model_dir": model.config.encoder.model_dir,
                    "name_or_path": getattr(model_config(encoder.model), "_name_or_path", None),
                    "model_type": getattr(model_config(encoder.model), "model_type", None),
                },
                "n_trainable_parameters": len(model.trainable_parameters),
                "versions": {"torch": torch.__version__},
            },
        )
        _write_json(
            staging / "training_log.json",
            {"steps": model.step_log, "epochs": model.epoch_log, "optimizer_groups": model.optimizer_groups},
        )
        _write_json(staging / "extra.json", dict(extra or {}))
        if serving is not None:
            _write_json(staging / "serving.json", dict(serving))
            if serving["backend"] in ONNX_FILES:
                write_onnx(encoder, str(serving["backend"]), staging)
        files = {name: _sha256(staging / name) for name in _listing(staging)}
        content_hash = _content_hash(files)
        _write_json(
            staging / MANIFEST,
            {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "files": files,
                "sizes": {name: (staging / name).stat().st_size for name in files},
                "content_hash": content_hash,
            },
        )
        for name in [*files, MANIFEST]:
            path = staging / name
            _fsync(path)
            path.chmod(0o444)
        _fsync(staging)
        if target.exists():  # lost a race with another writer
            raise FileExistsError(f"{target} already exists; model versions are immutable")
        os.rename(staging, target)
        _fsync(target.parent)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return content_hash


# --------------------------------------------------------------------------------------------- loading


def verify_artifact(directory: str | Path) -> dict[str, Any]:
    """Check every file of a version against its manifest.

    Returns
    -------
    dict
        The manifest.

    Raises
    ------
    ArtifactIntegrityError
        Missing manifest, missing, extra or modified file, or a content hash mismatch.
    """
    directory = Path(directory)
    manifest_path = directory / MANIFEST
    if not manifest_path.is_file():
        raise ArtifactIntegrityError(f"{directory} has no {MANIFEST}")
    try:
        manifest = json.loads(manifest_path.read_text())
        files: dict[str, str] = dict(manifest["files"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ArtifactIntegrityError(f"unreadable manifest in {directory}: {exc}") from exc
    if manifest.get("format") != FORMAT or manifest.get("format_version") != FORMAT_VERSION:
        raise ArtifactIntegrityError(f"{directory} is not a {FORMAT} v{FORMAT_VERSION} directory")
    present = set(_listing(directory)) - {MANIFEST}
    missing = sorted(set(files) - present)
    unexpected = sorted(present - set(files))
    if missing or unexpected:
        raise ArtifactIntegrityError(f"{directory}: missing files {missing}, unexpected files {unexpected}")
    changed = sorted(name for name, sha in files.items() if _sha256(directory / name) != sha)
    if changed:
        raise ArtifactIntegrityError(f"{directory}: files changed since the version was written: {changed}")
    if _content_hash(files) != manifest.get("content_hash"):
        raise ArtifactIntegrityError(f"{directory}: content hash does not match the file hashes")
    return dict(manifest)


def _read_json(directory: Path, name: str) -> Any:
    return json.loads((directory / name).read_text())


def load_artifact(directory: str | Path, *, backend: str | None = None) -> Predictor:
    """Load a verified model version.

    The stored preprocessing is always applied; there is deliberately no way to pass another.

    Parameters
    ----------
    directory:
        A directory written by :func:`save_artifact`.
    backend:
        Override the stored serving choice (e.g. ``"torch_fp32"`` for a comparison); by default
        the backend recorded in ``serving.json``, else ``torch_fp32``. An ONNX backend falls back
        to ``torch_fp32`` (with a warning) when onnxruntime is not installed.

    Returns
    -------
    Predictor

    Raises
    ------
    ArtifactIntegrityError
        When any file is missing or differs from the manifest.
    """
    directory = Path(directory)
    manifest = verify_artifact(directory)
    preprocessing = _read_json(directory, "preprocessing.json")
    labels = _read_json(directory, "labels.json")
    calibration = _read_json(directory, "calibration.json")
    serving = _read_json(directory, "serving.json") if "serving.json" in manifest["files"] else None

    config = EncoderConfig.from_preprocessing(directory, preprocessing)
    tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True)
    base = AutoModel.from_config(AutoConfig.from_pretrained(directory, local_files_only=True)).float()
    classifier = TextClassifier(base, len(labels["label_names"]), pooling=config.pooling, dropout=0.0)
    missing, unexpected = load_model(classifier, str(directory / WEIGHTS), strict=False)
    if missing or unexpected:
        raise ArtifactIntegrityError(
            f"weights do not fit the stored config: missing {missing}, unexpected {unexpected}"
        )
    classifier.eval()
    for param in classifier.parameters():
        param.requires_grad_(False)
    encoder = Encoder(config, model=classifier.encoder, tokenizer=tokenizer)

    chosen = backend or (serving["backend"] if serving else "torch_fp32")
    if chosen in ONNX_FILES and not onnxruntime_available():
        logger.warning(
            "onnxruntime is not installed; serving %s with torch_fp32 instead of %s", directory, chosen
        )
        chosen = "torch_fp32"
    onnx_file = directory / ONNX_FILES[chosen] if chosen in ONNX_FILES else None
    return Predictor(
        encoder=encoder,
        head=classifier.head,
        label_names=labels["label_names"],
        task=labels["task"],
        temperature=calibration["temperature"],
        thresholds=calibration["thresholds"],
        backend=chosen,
        onnx_path=onnx_file if onnx_file is not None and onnx_file.is_file() else None,
        directory=directory,
        content_hash=manifest["content_hash"],
        metadata={
            "serving": serving,
            "metrics": _read_json(directory, "metrics.json"),
            "extra": _read_json(directory, "extra.json"),
            "training": _read_json(directory, "training_config.json"),
        },
    )
