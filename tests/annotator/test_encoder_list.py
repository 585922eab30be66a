"""The operator's encoder list (settings.ENCODERS, docs/encoders.md): the bundled MiniLM always, each subdirectory of
RELABEL_ENCODER_DIR, the entries of RELABEL_ENCODERS; a malformed list stops the start with the reason."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from annotator.settings import encoders_from_environment
from training.encoder import default_model_dir


def test_without_variables_only_the_bundled_minilm_is_listed():
    assert encoders_from_environment({}) == {"minilm": default_model_dir()}


def test_a_json_map_and_a_directory_of_models_add_theirs(tmp_path: Path):
    models = tmp_path / "models"
    for name in ("scibert", "legal-bert.v2"):
        (models / name).mkdir(parents=True)
    (models / ".cache").mkdir()
    (models / "README.txt").write_text("not a model")
    environ = {"RELABEL_ENCODER_DIR": str(models),
               "RELABEL_ENCODERS": json.dumps({"biobert": "/srv/models/biobert-v1.1"})}

    listed = encoders_from_environment(environ)

    assert listed == {"minilm": default_model_dir(), "scibert": str(models / "scibert"),
                      "legal-bert.v2": str(models / "legal-bert.v2"), "biobert": "/srv/models/biobert-v1.1"}


def test_the_settings_module_reads_the_variables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import runpy

    monkeypatch.setenv("RELABEL_ENCODERS", json.dumps({"finbert": "/srv/models/finbert"}))
    monkeypatch.setenv("DATA_DIR", str(tmp_path))

    names = runpy.run_path(str(Path(__file__).resolve().parents[2] / "annotator" / "settings.py"))

    assert names["ENCODERS"] == {"minilm": default_model_dir(), "finbert": "/srv/models/finbert"}


@pytest.mark.parametrize(("raw", "reason"), [
    ("{not json", "not JSON"),
    ('["/srv/models/x"]', "must be a JSON object"),
    ('{"x": "relative/dir"}', "must be an absolute path"),
    ('{"x": 3}', "must be an absolute path"),
    ('{"minilm": "/srv/models/other"}', "listed twice"),
    ('{"../up": "/srv/models/x"}', "must be 1-64 letters"),
    ('{"a/b": "/srv/models/x"}', "must be 1-64 letters"),
    ('{"": "/srv/models/x"}', "must be 1-64 letters"),
])
def test_a_malformed_list_stops_the_start_with_the_reason(raw: str, reason: str):
    with pytest.raises(ImproperlyConfigured, match=reason):
        encoders_from_environment({"RELABEL_ENCODERS": raw})


def test_a_name_in_both_lists_or_a_missing_directory_stops_the_start(tmp_path: Path):
    (tmp_path / "scibert").mkdir()

    with pytest.raises(ImproperlyConfigured, match="'scibert' is listed twice"):
        encoders_from_environment({"RELABEL_ENCODER_DIR": str(tmp_path),
                                   "RELABEL_ENCODERS": json.dumps({"scibert": "/srv/other"})})
    with pytest.raises(ImproperlyConfigured, match="RELABEL_ENCODER_DIR"):
        encoders_from_environment({"RELABEL_ENCODER_DIR": str(tmp_path / "absent")})
