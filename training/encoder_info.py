"""What a local Hugging Face encoder directory holds, checked before anything trains on it.

:func:`inspect_encoder` loads the directory's config and tokenizer (offline), makes sure ``AutoModel`` has a
class for it and that weights are there, and reports the figures an operator or project admin chooses by:
hidden size, parameter count, layers, and the longest input the model accepts. The weights are never
loaded: safetensors headers give the parameter count (a ``pytorch_model.bin`` directory is counted from its
config on PyTorch's meta device). Results are cached per directory and its files' sizes and modification
times, so asking again is free until the directory changes.
"""

from __future__ import annotations

import functools
import json
import math
import struct
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

#: Weight files, in the order ``from_pretrained`` looks for them.
SAFETENSORS_FILE = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
PYTORCH_FILES = ("pytorch_model.bin", "pytorch_model.bin.index.json")
#: RoBERTa-style models number positions from ``pad_token_id + 1``: that many positions are never usable.
OFFSET_POSITION_TYPES = frozenset({"roberta", "xlm-roberta", "camembert", "roberta-prelayernorm", "xmod",
                                   "data2vec-text", "longformer", "xlm-roberta-xl"})
#: A tokenizer needs one of these files; without any, transformers builds an empty vocabulary without a word.
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "spiece.model", "sentencepiece.bpe.model",
                   "tokenizer.model", "spm.model", "sentencepiece.model")
_FLOAT_DTYPES = frozenset({"F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2"})
_MAX_HEADER_BYTES = 100 * 1024 * 1024


class EncoderDirectoryError(ValueError):
    """The directory cannot serve as an encoder; the message says why (and never repeats the path)."""


@dataclass(frozen=True)
class EncoderInfo:
    """An encoder directory's figures.

    Attributes
    ----------
    model_type:
        The config's ``model_type`` (``bert``, ``distilbert``, ``roberta``...).
    hidden_size:
        Width of the pooled embedding.
    num_parameters:
        Parameters in the weight files.
    num_layers:
        Transformer layers, when the config names them.
    max_positions:
        The config's ``max_position_embeddings`` (None for models without absolute positions).
    max_tokens:
        The longest input the model accepts, special tokens included (``max_positions`` less the offset of
        RoBERTa-style position ids); None when the config sets no limit.
    vocab_size:
        Tokenizer vocabulary size.
    """

    model_type: str
    hidden_size: int
    num_parameters: int
    num_layers: int | None
    max_positions: int | None
    max_tokens: int | None
    vocab_size: int | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def inspect_encoder(model_dir: str | Path) -> EncoderInfo:
    """Check an encoder directory and report its figures (cached per directory state).

    Parameters
    ----------
    model_dir:
        A local Hugging Face model directory.

    Raises
    ------
    EncoderDirectoryError
        Not a directory, no or unreadable ``config.json``, a model type ``AutoModel`` cannot load, no hidden
        size, a tokenizer that does not load, or no weight files.
    """
    directory = Path(model_dir)
    if not directory.is_dir():
        raise EncoderDirectoryError("the directory does not exist")
    outcome = _inspect_cached(str(directory.resolve()), _state(directory))
    if isinstance(outcome, str):
        raise EncoderDirectoryError(outcome)
    return outcome


def _state(directory: Path) -> tuple[tuple[str, int, int], ...]:
    """Name, size and modification time of every file at the top of the directory (the cache key)."""
    rows = []
    for path in directory.iterdir():
        try:
            stat = path.stat()
        except OSError:
            continue
        rows.append((path.name, stat.st_size, stat.st_mtime_ns))
    return tuple(sorted(rows))


@functools.lru_cache(maxsize=64)
def _inspect_cached(directory: str, state: tuple[tuple[str, int, int], ...]) -> EncoderInfo | str:
    """The info, or the reason the directory is unusable (errors are cached too: the state is in the key)."""
    try:
        return _inspect(Path(directory), {name for name, _, _ in state})
    except EncoderDirectoryError as error:
        return str(error)


def _inspect(directory: Path, files: set[str]) -> EncoderInfo:
    try:
        from transformers import MODEL_MAPPING, AutoConfig, AutoTokenizer
    except ImportError as exc:  # pragma: no cover - exercised only on a broken install
        raise ImportError("training.encoder_info needs transformers (pip install 'transformers>=4.50')") from exc

    if "config.json" not in files:
        raise EncoderDirectoryError("no config.json: not a Hugging Face model directory")
    try:
        config = AutoConfig.from_pretrained(directory, local_files_only=True)
    except Exception as error:  # noqa: BLE001 - any failure means the config is unusable; say which
        raise EncoderDirectoryError(f"config.json does not load: {_short(error, directory)}") from error
    model_type = str(getattr(config, "model_type", "") or "unknown")
    if type(config) not in MODEL_MAPPING:
        raise EncoderDirectoryError(f"model type {model_type!r} has no encoder class in transformers' AutoModel")
    hidden = getattr(config, "hidden_size", None)
    if not isinstance(hidden, int) or hidden < 1:
        raise EncoderDirectoryError(f"config.json of model type {model_type!r} names no hidden_size")
    if not files.intersection(TOKENIZER_FILES):
        raise EncoderDirectoryError(f"no tokenizer files (one of {', '.join(TOKENIZER_FILES[:3])}...)")
    try:
        tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True)
    except Exception as error:  # noqa: BLE001 - a missing or broken tokenizer file, whichever it is
        raise EncoderDirectoryError(f"the tokenizer does not load: {_short(error, directory)}") from error
    missing = {"input_ids", "attention_mask"} - set(getattr(tokenizer, "model_input_names", ()))
    if missing:
        raise EncoderDirectoryError(f"the tokenizer gives no {', '.join(sorted(missing))}")
    if len(tokenizer) <= len(set(tokenizer.all_special_tokens)):
        raise EncoderDirectoryError("the tokenizer's vocabulary holds nothing but special tokens")
    positions = getattr(config, "max_position_embeddings", None)
    positions = positions if isinstance(positions, int) and positions > 0 else None
    max_tokens = positions
    if positions is not None and model_type in OFFSET_POSITION_TYPES:
        max_tokens = positions - int(getattr(config, "pad_token_id", 1) or 0) - 1
    layers = getattr(config, "num_hidden_layers", None) or getattr(config, "n_layers", None)
    return EncoderInfo(
        model_type=model_type, hidden_size=hidden, num_parameters=_parameter_count(directory, files, config),
        num_layers=int(layers) if isinstance(layers, int) else None, max_positions=positions,
        max_tokens=max_tokens, vocab_size=len(tokenizer),
    )


def _short(error: Exception, directory: Path) -> str:
    """An exception's first line, without the directory's path (request answers never show operator paths)."""
    text = (str(error).strip().splitlines() or [type(error).__name__])[0]
    return text.replace(str(directory), "<encoder>")[:300]


def _parameter_count(directory: Path, files: set[str], config: Any) -> int:
    if SAFETENSORS_FILE in files:
        return _safetensors_parameters([directory / SAFETENSORS_FILE])
    if SAFETENSORS_INDEX in files:
        try:
            index = json.loads((directory / SAFETENSORS_INDEX).read_text())
            shards = sorted(set(index["weight_map"].values()))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
            raise EncoderDirectoryError(f"{SAFETENSORS_INDEX} is not a weight index: {error}") from error
        absent = [name for name in shards if name not in files]
        if absent:
            raise EncoderDirectoryError(f"weight shards named by {SAFETENSORS_INDEX} are missing: {', '.join(absent)}")
        return _safetensors_parameters([directory / name for name in shards])
    if any(name in files for name in PYTORCH_FILES):
        return _meta_parameters(config)
    raise EncoderDirectoryError(f"no weights ({SAFETENSORS_FILE} or {PYTORCH_FILES[0]})")


def _safetensors_parameters(paths: list[Path]) -> int:
    """Floating-point values in safetensors files, from their headers alone (integer buffers are not weights)."""
    total = 0
    for path in paths:
        try:
            with path.open("rb") as handle:
                (length,) = struct.unpack("<Q", handle.read(8))
                if length > _MAX_HEADER_BYTES:
                    raise ValueError("header too large")
                header = json.loads(handle.read(length))
            total += sum(math.prod(entry["shape"]) for name, entry in header.items()
                         if name != "__metadata__" and entry.get("dtype") in _FLOAT_DTYPES)
        except (OSError, ValueError, struct.error, KeyError, TypeError, AttributeError) as error:
            raise EncoderDirectoryError(f"{path.name} is not a readable safetensors file ({error})") from error
    if total == 0:
        raise EncoderDirectoryError("the weight files hold no floating-point tensors")
    return total


def _meta_parameters(config: Any) -> int:
    """Parameters of the model the config describes, built on the meta device (no memory, no weights read)."""
    import torch
    from transformers import AutoModel

    with torch.device("meta"):
        model = AutoModel.from_config(config)
    return sum(p.numel() for p in model.parameters())
