"""Loaded model versions, cached per process (web or worker child), loaded lazily on first use.

Loading verifies the artifact's hashes and applies its stored preprocessing (training.artifacts).
"""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING

from django.conf import settings

from annotator.errors import Unavailable

if TYPE_CHECKING:  # pragma: no cover
    from annotator.models import ModelVersion
    from training.artifacts import Predictor

log = logging.getLogger(__name__)
_MAX_LOADED = 2
_lock = threading.Lock()
_loaded: OrderedDict[tuple[int, str], Predictor] = OrderedDict()


def artifact_root() -> Path:
    return Path(settings.ARTIFACT_DIR)


def version_dir(version: ModelVersion) -> Path:
    """Where a version's files live: the model artifact in ``model/``, its drift reference beside it.
    Refused (503) when a link in the store leads it outside ARTIFACT_DIR."""
    directory = artifact_root() / f"project-{version.project_id}" / f"v{version.number}"
    if not directory.resolve().is_relative_to(artifact_root().resolve()):
        log.error("model version %s (id %s): %s leaves the artifact store", version.number, version.pk, directory)
        raise Unavailable(f"the files of model version {version.number} are not usable; promote another "
                          "version or retrain")
    return directory


def artifact_dir(version: ModelVersion) -> Path:
    """The directory of a version's model artifact, read from its row: refused (503) unless it and every
    link under it resolve inside ARTIFACT_DIR, so no database value can point a load elsewhere."""
    root = artifact_root().resolve()
    relative = version.artifact_path
    directory = (root / relative).resolve() if relative else root
    escapes = [] if directory != root and directory.is_relative_to(root) else [directory]
    if not escapes and directory.is_dir():
        for parent, names, files in os.walk(directory):  # links are checked, not followed
            links = [Path(parent, name) for name in names + files if Path(parent, name).is_symlink()]
            escapes += [link for link in links if not link.resolve().is_relative_to(root)]
    if not relative or Path(relative).is_absolute() or escapes:
        log.error("model version %s (id %s): artifact path %r leaves the artifact store %s: %s",
                  version.number, version.pk, relative, root, escapes)
        raise Unavailable(f"the files of model version {version.number} are not usable; promote another "
                          "version or retrain")
    return directory


def predictor_for(version: ModelVersion) -> Predictor:
    from training.artifacts import ArtifactIntegrityError, load_artifact

    key = (version.pk, version.content_hash)
    with _lock:
        if key in _loaded:
            _loaded.move_to_end(key)
            return _loaded[key]
    try:
        predictor = load_artifact(artifact_dir(version))
    except ArtifactIntegrityError as error:
        log.error("model version %s (id %s) failed its integrity check: %s", version.number, version.pk, error)
        raise Unavailable(f"the files of model version {version.number} are missing or were changed; "
                          "promote another version or retrain") from error
    with _lock:
        _loaded[key] = predictor
        while len(_loaded) > _MAX_LOADED:
            _loaded.popitem(last=False)
    return predictor
