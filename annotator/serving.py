"""Loaded model versions, cached per process (web or worker child), loaded lazily on first use.

Loading verifies the artifact's hashes and applies its stored preprocessing (training.artifacts).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING

from django.conf import settings

if TYPE_CHECKING:  # pragma: no cover
    from annotator.models import ModelVersion
    from training.artifacts import Predictor

_MAX_LOADED = 2
_lock = threading.Lock()
_loaded: OrderedDict[tuple[int, str], Predictor] = OrderedDict()


def artifact_root() -> Path:
    return Path(settings.ARTIFACT_DIR)


def version_dir(version: ModelVersion) -> Path:
    """Where a version's files live: the model artifact in ``model/``, its drift reference beside it."""
    return artifact_root() / f"project-{version.project_id}" / f"v{version.number}"


def predictor_for(version: ModelVersion) -> Predictor:
    from training.artifacts import load_artifact

    key = (version.pk, version.content_hash)
    with _lock:
        if key in _loaded:
            _loaded.move_to_end(key)
            return _loaded[key]
    predictor = load_artifact(artifact_root() / version.artifact_path)
    with _lock:
        _loaded[key] = predictor
        while len(_loaded) > _MAX_LOADED:
            _loaded.popitem(last=False)
    return predictor
