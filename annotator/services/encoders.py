"""The encoder a project trains from: a name from the operator's allow-list (settings.ENCODERS, docs/encoders.md),
never a path from a request.

A project admin picks the name (project setting ``encoder``), the pooling and ``max_length``; whenever one of
them changes, :func:`encoder_settings_check` makes sure the directory behind the name still loads (config and
tokenizer, offline; weights present: training.encoder_info) and that ``max_length`` fits the model's positions,
before anything is saved. :func:`encoder_describe` gives the figures the project's API answer and settings page
show (hidden size, parameters, positions); directory checks are cached per directory state, so showing them
costs nothing after the first time. :func:`project_encoder_config` is what training and embedding build the
encoder from (services.embeddings.encoder_config).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.conf import settings

from annotator.errors import InvalidInput
from annotator.models import Project
from annotator.project_settings import encoder_names
from training.encoder_info import EncoderDirectoryError, inspect_encoder

#: Settings whose change re-checks the encoder (they all shape what the encoder is given).
ENCODER_SETTINGS = ("encoder", "pooling", "max_length")


def encoder_directory(name: str) -> str:
    """The local directory the operator listed under ``name``; InvalidInput (400) when it is not listed."""
    directory = settings.ENCODERS.get(name) if isinstance(name, str) else None
    if directory is None:
        raise InvalidInput([{"field": "settings.encoder",
                             "message": f"unknown encoder {name!r}; the operator lists: {', '.join(encoder_names())}"}])
    return str(directory)


def encoder_info(name: str) -> dict[str, Any]:
    """The figures of listed encoder ``name`` (``name``, ``model_type``, ``hidden_size``, ``parameters``,
    ``layers``, ``max_positions``, ``max_tokens``, ``vocab_size``); InvalidInput naming ``settings.encoder``
    when it is not listed or its directory does not load."""
    directory = encoder_directory(name)
    try:
        info = inspect_encoder(directory)
    except EncoderDirectoryError as error:
        raise InvalidInput([{"field": "settings.encoder",
                             "message": f"encoder {name!r} cannot be used: {error}"}]) from error
    return {"name": name, "model_type": info.model_type, "hidden_size": info.hidden_size,
            "parameters": info.num_parameters, "layers": info.num_layers, "max_positions": info.max_positions,
            "max_tokens": info.max_tokens, "vocab_size": info.vocab_size}


def encoder_describe(name: str) -> dict[str, Any]:
    """Like :func:`encoder_info`, but a name the operator no longer lists, or a directory that stopped loading,
    gives ``{"name", "error"}`` instead of an exception (pages and GET answers still render)."""
    try:
        return {**encoder_info(name), "error": None}
    except InvalidInput as error:
        return {"name": name, "error": error.errors[0]["message"]}


def project_encoder_config(project: Project):  # noqa: ANN201
    """The project's encoder as training.encoder.EncoderConfig: the directory the operator lists under the project's
    ``encoder``, its ``pooling`` and ``max_length``. InvalidInput naming the setting to change when the name is no
    longer listed, the directory stopped loading, or ``max_length`` is above the encoder's positions (a row saved
    before that was checked)."""
    from training.encoder import EncoderConfig

    name, max_length = project.setting("encoder"), int(project.setting("max_length"))
    _check_length(name, encoder_info(name), max_length, "settings.max_length")
    return EncoderConfig(model_dir=encoder_directory(name), max_length=max_length, pooling=project.setting("pooling"))


def encoder_settings_check(*, before: Mapping[str, Any], after: Mapping[str, Any]) -> None:
    """When the encoder, pooling or ``max_length`` differ between two effective settings: the encoder must
    load and ``max_length`` must fit its positions. InvalidInput (400) names the field to change."""
    if all(before.get(name) == after.get(name) for name in ENCODER_SETTINGS):
        return
    max_length = after["max_length"]
    field = "settings.max_length" if before.get("max_length") != max_length else "settings.encoder"
    _check_length(after["encoder"], encoder_info(after["encoder"]), max_length, field)


def _check_length(name: str, info: Mapping[str, Any], max_length: int, field: str) -> None:
    limit = info["max_tokens"]
    if limit is not None and max_length > limit:
        raise InvalidInput([{"field": field, "message": (
            f"max_length {max_length} is more than encoder {name!r} accepts: at most {limit} tokens "
            f"(its max_position_embeddings is {info['max_positions']})")}])
