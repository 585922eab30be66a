"""services.labels: a rename rewrites the name wherever the project's history stores it, the same way on
PostgreSQL's one-statement path and on the portable row-by-row path (the SQLite default)."""

from __future__ import annotations

import pytest

from annotator.models import Annotation, Example, ExampleScore
from annotator.services import labels as label_services
from tests.annotator.views import factories


@pytest.mark.parametrize("path", ["postgresql", "rows"])
def test_both_rename_paths_rewrite_annotations_scores_and_consensus_and_nothing_else(
        path, multi_project, make_project, admin, reviewer, annotate):
    other = make_project(admin, name="Other", task="multi_label", labels=["sports", "food", "tech"])
    [mine] = factories.import_examples(multi_project, admin, ["match report"], labels=[None])
    [theirs] = factories.import_examples(other, admin, ["match report"], labels=[None], prefix="o")
    annotate(mine, admin, "sports", "tech")
    annotate(mine, reviewer, "food")
    annotate(theirs, admin, "sports")
    version = factories.model_version(multi_project, 1)
    ExampleScore.objects.create(example=mine, model_version=version, probs=[0.8, 0.1, 0.7], predicted=["sports", "tech"],
                                confidence=0.8, entropy=0.3, margin=0.1, suggested_label="sports")
    Example.objects.filter(pk=mine.pk).update(consensus={"labels": ["sports"], "quality": 0.9, "through_annotation": 1})

    rename = label_services._rename_postgresql if path == "postgresql" else label_services._rename_rows
    rename(multi_project.id, "sports", "athletics")

    assert sorted(Annotation.objects.filter(example=mine).values_list("labels", flat=True)) == [
        ["athletics", "tech"], ["food"]]
    assert list(Annotation.objects.filter(example=theirs).values_list("labels", flat=True)) == [["sports"]]
    assert ExampleScore.objects.get(example=mine).predicted == ["athletics", "tech"]
    mine.refresh_from_db()
    assert mine.consensus == {"labels": ["athletics"], "quality": 0.9, "through_annotation": 1}
