"""Embed once: every example's embedding is computed once per encoder fingerprint and kept in the embedding
cache (training.embedding_cache, one SQLite file under EMBEDDING_CACHE_DIR, keyed by the fingerprint and the
text's sha256), which is the pool's store.

- Imports and pushes send ``embed_examples`` (scoring queue) for the examples they created, so the next
  training and scoring find them ready. Only while the project trains with the frozen encoder: a fine-tuned
  version has an encoder of its own, and vectors of the base encoder would never be read.
- Training, scoring, pushes and drift checks read the cache through ``Predictor.predict(..., cache=...)``: a
  frozen-mode version shares its encoder's fingerprint with the versions before it, so rescoring the pool
  is the new head over stored vectors, and a pushed sample is embedded once (the push stores its vector; the
  drift check reads it).
"""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.conf import settings

from annotator import dispatch
from annotator.errors import InvalidInput
from annotator.models import Example, ModelVersion, Project
from annotator.services.encoders import project_encoder_config

if TYPE_CHECKING:  # pragma: no cover
    from training.embedding_cache import EmbeddingCache

log = logging.getLogger(__name__)

# Examples per embed task: a few minutes of CPU at most, and the unit a lost worker costs.
EMBED_CHUNK = int(os.environ.get("EMBED_CHUNK_SIZE", 2000))


def embedding_cache() -> EmbeddingCache:
    from training.embedding_cache import EmbeddingCache

    path = Path(settings.EMBEDDING_CACHE_DIR)
    path.mkdir(parents=True, exist_ok=True)
    return EmbeddingCache(path / "embeddings.sqlite3")


def encoder_config(project: Project):  # noqa: ANN201
    """The project's base encoder and preprocessing (training.encoder.EncoderConfig): the encoder the project's
    settings name, from the operator's list (services.encoders; InvalidInput when it cannot be used)."""
    return project_encoder_config(project)


def trains_frozen(project: Project) -> bool:
    """Whether the project's next version will most likely embed with the base encoder: its newest ready
    version trained frozen, or it has none yet (every project starts frozen)."""
    latest = (ModelVersion.objects.filter(project=project, status=ModelVersion.Status.READY)
              .order_by("-number").values_list("mode", flat=True).first())
    return latest in (None, "", "frozen")


def embed_after_import(project: Project, example_ids: list[int]) -> None:
    """Ask the scoring workers to embed newly stored examples once the import commits."""
    if not example_ids or not settings.EMBED_ON_IMPORT or not trains_frozen(project):
        return
    for start in range(0, len(example_ids), EMBED_CHUNK):
        dispatch.send_after_commit(dispatch.EMBED_EXAMPLES, project.pk, example_ids[start:start + EMBED_CHUNK])


@functools.lru_cache(maxsize=2)
def _base_encoder(config_json: str) -> Any:
    import json

    from training.encoder import Encoder, EncoderConfig

    return Encoder(EncoderConfig(**json.loads(config_json)))


def base_encoder(project: Project) -> Any:
    """The project's base encoder (what a frozen-mode version embeds with), loaded once per process."""
    import json

    return _base_encoder(json.dumps(encoder_config(project).to_dict(), sort_keys=True))


def embed_examples(project_id: int, example_ids: list[int]) -> int:
    """Embed the given examples with the project's base encoder where the cache lacks them; returns how many
    went through the model. Idempotent: a redelivery finds them stored."""
    project = Project.objects.filter(pk=project_id).first()
    if project is None or not trains_frozen(project):
        return 0
    texts = list(Example.objects.filter(project=project, id__in=example_ids).values_list("text", flat=True))
    try:
        encoder = base_encoder(project)
    except InvalidInput as error:  # the project's encoder cannot be used now; its next train job says so
        log.warning("project %s: examples not embedded: %s", project_id, error)
        return 0
    before = encoder.texts_embedded
    encoder.embed_cached(texts, embedding_cache())
    embedded = encoder.texts_embedded - before
    log.info("project %s: %s of %s examples embedded (the rest were stored)", project_id, embedded, len(texts))
    return embedded
