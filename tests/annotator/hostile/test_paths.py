"""No request reaches the file system outside ARTIFACT_DIR.

The places in ``annotator/`` that build a path from request data or database values:
- ``serving.artifact_dir``: a version's ``artifact_path`` column, loaded by predictions, production
  samples, scoring and the shadow comparison;
- ``serving.version_dir``: ``ARTIFACT_DIR/project-<id>/v<number>`` (integers from the row) for the drift
  reference and the pool embeddings;
- the export's download name (the project id only) and the upload on the import page (read in memory or
  into Django's randomly named temporary file; the client's file name is only shown).
Everything else under ``annotator/`` opens paths from settings or the command line of an operator: the project
setting ``encoder`` is a name looked up in settings.ENCODERS, never a path (tests/annotator/api/test_project_encoder.py
shows a listed directory's path given as the name is refused).
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from annotator import serving
from annotator.errors import Unavailable
from annotator.models import ModelVersion
from tests.annotator.assertions import counts, error_list


@pytest.fixture
def store(tmp_path: Path, settings: Any) -> dict[str, Path]:
    """ARTIFACT_DIR in a fresh folder, with a folder beside it that must never be read."""
    root, outside = tmp_path / "artifacts", tmp_path / "outside"
    (outside / "model").mkdir(parents=True)
    (outside / "model" / "manifest.json").write_text('{"stolen": true}')
    root.mkdir()
    settings.ARTIFACT_DIR = root
    serving._loaded.clear()
    yield {"root": root, "outside": outside}
    serving._loaded.clear()


class FakePredictor:
    def predict(self, texts: list[str], **_: Any) -> Any:
        probs = np.tile([0.7, 0.2, 0.1], (len(texts), 1))
        return type("Prediction", (), {"probs": probs, "labels": ["positive"] * len(texts)})()


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Every directory the serving code asks training.artifacts to load (a fake predictor answers)."""
    import training.artifacts

    seen: list[Path] = []

    def load(directory: Any, **_: Any) -> FakePredictor:
        seen.append(Path(directory))
        return FakePredictor()

    monkeypatch.setattr(training.artifacts, "load_artifact", load)
    return seen


def serving_version(project: Any, artifact_path: str, number: int = 1) -> ModelVersion:
    version = ModelVersion.objects.create(project=project, number=number, status=ModelVersion.Status.READY,
                                          artifact_path=artifact_path, content_hash=uuid.uuid4().hex)
    project.serving_version = version
    project.save(update_fields=["serving_version"])
    return version


def predict(client: Any, project: Any) -> Any:
    return client.post(f"/api/v1/projects/{project.id}/predict/", {"texts": ["hello"]}, format="json")


@pytest.mark.django_db
@pytest.mark.parametrize("artifact_path", [
    "../outside/model",
    "project-1/v1/../../../outside/model",
    "{outside}/model",
    "",
    ".",
    "project-1/..",
], ids=["parent", "parent inside a path", "absolute", "empty", "the store itself", "climbs back to the store"])
def test_an_artifact_path_outside_the_store_is_never_loaded(project: Any, as_admin: Any, store: dict[str, Path],
                                                            loads: list[Path], artifact_path: str) -> None:
    serving_version(project, artifact_path.format(outside=store["outside"]))

    response = predict(as_admin, project)

    assert response.status_code == 503
    assert "not usable" in error_list(response)[0]["message"]
    assert str(store["outside"]) not in response.content.decode()  # no server path in the answer
    assert loads == []


@pytest.mark.django_db
def test_a_symlinked_version_folder_leading_outside_is_refused(project: Any, as_admin: Any,
                                                               store: dict[str, Path], loads: list[Path]) -> None:
    (store["root"] / "project-x").mkdir()
    os.symlink(store["outside"] / "model", store["root"] / "project-x" / "model")
    serving_version(project, "project-x/model")

    assert predict(as_admin, project).status_code == 503
    assert loads == []


@pytest.mark.django_db
def test_a_symlinked_file_inside_the_model_folder_leading_outside_is_refused(
        project: Any, as_admin: Any, store: dict[str, Path], loads: list[Path]) -> None:
    model = store["root"] / "project-x" / "v1" / "model"
    model.mkdir(parents=True)
    (model / "labels.json").write_text("[]")
    os.symlink(store["outside"] / "model" / "manifest.json", model / "manifest.json")
    serving_version(project, "project-x/v1/model")

    assert predict(as_admin, project).status_code == 503
    assert loads == []


@pytest.mark.django_db
def test_a_version_inside_the_store_loads_from_there(project: Any, as_admin: Any, store: dict[str, Path],
                                                     loads: list[Path]) -> None:
    model = store["root"] / "project-x" / "v1" / "model"
    model.mkdir(parents=True)
    os.symlink(model / "missing-but-inside", model / "a-link-inside")  # links within the store are fine
    serving_version(project, "project-x/v1/model")

    response = predict(as_admin, project)

    assert response.status_code == 200, response.content
    assert loads == [model.resolve()]


@pytest.mark.django_db
def test_a_broken_artifact_answers_503_and_the_samples_are_not_half_stored(
        project: Any, as_admin: Any, store: dict[str, Path]) -> None:
    # The real loader: the folder lacks its manifest, so the integrity check fails.
    (store["root"] / "project-x" / "v1" / "model").mkdir(parents=True)
    serving_version(project, "project-x/v1/model")
    before = counts()

    predicted = predict(as_admin, project)
    pushed = as_admin.post(f"/api/v1/projects/{project.id}/samples/", [{"text": "from production"}], format="json")

    assert predicted.status_code == 503 and pushed.status_code == 503
    assert "missing or were changed" in error_list(pushed)[0]["message"]
    assert counts() == before


@pytest.mark.django_db
def test_a_symlinked_project_folder_cannot_lead_the_version_folder_outside(project: Any,
                                                                         store: dict[str, Path]) -> None:
    os.symlink(store["outside"], store["root"] / f"project-{project.id}")
    version = ModelVersion.objects.create(project=project, number=1)

    with pytest.raises(Unavailable):
        serving.version_dir(version)


@pytest.mark.django_db
def test_another_projects_model_version_id_is_a_404(make_project: Any, admin: Any, outsider: Any, as_admin: Any,
                                                    store: dict[str, Path]) -> None:
    theirs = make_project(outsider, name="theirs")
    version = ModelVersion.objects.create(project=theirs, number=1, status=ModelVersion.Status.READY,
                                          artifact_path="../outside/model")

    response = as_admin.post(f"/api/v1/models/{version.id}/promote/")

    assert response.status_code == 404
    theirs.refresh_from_db()
    assert theirs.serving_version_id is None


# --- the other ways in: static files, downloads, uploads ---------------------------------------------------
@pytest.mark.django_db
@pytest.mark.parametrize("url", [
    "/static/../annotator/settings.py",
    "/static/%2e%2e/annotator/settings.py",
    "/static/..%2fannotator%2fsettings.py",
    "/static/%2e%2e%2f%2e%2e%2fpyproject.toml",
    "/static//etc/passwd",
    "/static/..\\annotator\\settings.py",
])
def test_static_files_do_not_reach_outside_their_folders(client: Client, url: str) -> None:
    response = client.get(url)

    body = b"".join(response.streaming_content) if response.streaming else response.content
    assert response.status_code == 404
    assert b"SECRET_KEY" not in body and b"root:" not in body and b"[project]" not in body


@pytest.mark.django_db
def test_the_export_download_name_is_built_from_the_project_id_only(make_project: Any, admin: Any,
                                                                     as_admin: Any) -> None:
    project = make_project(admin, name='../../etc/passwd"; filename="evil.sh')

    response = as_admin.get(f"/api/v1/projects/{project.id}/export/?format=csv")

    assert response["Content-Disposition"] == f'attachment; filename="project-{project.id}.csv"'


@pytest.mark.django_db
def test_an_uploaded_file_name_is_never_used_as_a_path(project: Any, admin: Any, tmp_path: Path) -> None:
    target = tmp_path / f"planted-{uuid.uuid4().hex}.csv"
    client = Client()
    client.force_login(admin)
    name = "../" * 12 + str(target).lstrip("/")

    response = client.post(f"/projects/{project.id}/import/",
                           {"file": SimpleUploadedFile(name, b"text,label\nhello,positive\n"), "action": "import"})

    assert response.status_code == 200
    assert not target.exists()
    assert project.examples.count() == 1
