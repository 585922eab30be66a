"""GET /api/v1/projects/{id}/examples/: filters and pagination."""

from __future__ import annotations

import pytest

from tests.annotator.assertions import error_list


def url(project_id: int) -> str:
    return f"/api/v1/projects/{project_id}/examples/"


@pytest.fixture
def listed(project, admin, reviewer, make_examples, annotate):
    """Five examples: two seed rows labeled positive/negative, a pool row relabeled, two unlabeled imports."""
    seed_pos, seed_neg, pool, plain, other = make_examples(
        project,
        admin,
        [
            {"external_id": "s1", "text": "I LOVE this blender", "label": "positive", "source": "seed"},
            {"external_id": "s2", "text": "The lid cracked", "label": "negative", "source": "seed"},
            {"external_id": "p1", "text": "Works, I guess", "source": "pool"},
            {"external_id": "i1", "text": "Arrived on Tuesday"},
            {"external_id": "i2", "text": "love the colour"},
        ],
    )
    annotate(pool, reviewer, "neutral")
    return {"seed_pos": seed_pos, "seed_neg": seed_neg, "pool": pool, "plain": plain, "other": other}


def ext_ids(response) -> list[str]:
    assert response.status_code == 200, response.json()
    return [row["external_id"] for row in response.json()["results"]]


@pytest.mark.django_db
def test_the_list_returns_every_example_with_its_current_label(project, listed, as_reviewer):
    response = as_reviewer.get(url(project.id))

    assert ext_ids(response) == ["s1", "s2", "p1", "i1", "i2"]
    body = response.json()
    assert body["count"] == 5 and body["next"] is None and body["previous"] is None
    row = body["results"][2]
    assert row["id"] == listed["pool"].id
    assert (row["text"], row["source"], row["label"], row["labels"], row["label_source"]) == (
        "Works, I guess",
        "pool",
        "neutral",
        ["neutral"],
        "label",
    )
    assert row["latest_score"] is None and row["metadata"] == {} and row["created_at"]
    unlabeled = body["results"][3]
    assert (unlabeled["label"], unlabeled["labels"], unlabeled["label_source"]) == (None, [], None)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"source": "seed"}, ["s1", "s2"]),
        ({"source": "import"}, ["i1", "i2"]),
        ({"source": "production"}, []),
        ({"labeled": "true"}, ["s1", "s2", "p1"]),
        ({"labeled": "false"}, ["i1", "i2"]),
        ({"label": "positive"}, ["s1"]),
        ({"label": "neutral"}, ["p1"]),
        ({"q": "love"}, ["s1", "i2"]),
        ({"q": "  LID "}, ["s2"]),
        ({"q": "nothing matches this"}, []),
        ({"source": "seed", "label": "negative"}, ["s2"]),
        ({"labeled": "false", "q": "love"}, ["i2"]),
    ],
    ids=lambda value: str(value),
)
def test_filters_narrow_the_list(project, listed, as_reviewer, params, expected):
    assert ext_ids(as_reviewer.get(url(project.id), params)) == expected


@pytest.mark.django_db
def test_the_label_filter_follows_the_current_label_not_the_first_one(
    project, listed, reviewer, annotate, as_reviewer
):
    annotate(listed["seed_pos"], reviewer, "negative", kind="review")

    assert ext_ids(as_reviewer.get(url(project.id), {"label": "positive"})) == []
    assert ext_ids(as_reviewer.get(url(project.id), {"label": "negative"})) == ["s1", "s2"]


@pytest.mark.django_db
def test_the_label_filter_in_a_multi_label_project_matches_any_of_the_labels(
    multi_project, admin, as_admin, make_examples
):
    make_examples(
        multi_project,
        admin,
        [
            {"external_id": "a", "text": "chef codes", "labels": ["food", "tech"]},
            {"external_id": "b", "text": "goal", "labels": ["sports"]},
        ],
    )

    assert ext_ids(as_admin.get(url(multi_project.id), {"label": "tech"})) == ["a"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"labeled": "maybe"}, "labeled"),
        ({"label": "furious"}, "label"),
        ({"q": "x" * 201}, "q"),
    ],
)
def test_bad_filters_are_refused(project, listed, as_reviewer, params, field):
    response = as_reviewer.get(url(project.id), params)

    assert response.status_code == 400
    assert error_list(response)[0]["field"] == field


@pytest.mark.django_db
@pytest.mark.parametrize(
    "params", [{"q": "a\x00b"}, {"source": "\x00"}, {"label": "\x00"}], ids=["q", "source", "label"]
)
def test_a_nul_character_in_a_filter_is_a_400_not_a_crash(project, listed, as_reviewer, params):
    response = as_reviewer.get(url(project.id), params)

    assert response.status_code == 400
    error_list(response)


@pytest.mark.django_db
def test_pages_carry_count_next_and_previous(project, listed, as_reviewer):
    first = as_reviewer.get(url(project.id), {"page_size": 2}).json()
    second = as_reviewer.get(first["next"]).json()
    third = as_reviewer.get(second["next"]).json()

    assert first["count"] == second["count"] == third["count"] == 5
    assert first["previous"] is None and second["previous"] and third["next"] is None
    pages = [first, second, third]
    assert [[r["external_id"] for r in p["results"]] for p in pages] == [["s1", "s2"], ["p1", "i1"], ["i2"]]
    assert "page_size=2" in first["next"]


@pytest.mark.django_db
def test_pagination_keeps_the_filters(project, listed, as_reviewer):
    first = as_reviewer.get(url(project.id), {"labeled": "true", "page_size": 2}).json()
    second = as_reviewer.get(first["next"]).json()

    assert first["count"] == 3
    assert [r["external_id"] for r in second["results"]] == ["p1"]


@pytest.mark.django_db
def test_a_page_past_the_end_is_404(project, listed, as_reviewer):
    response = as_reviewer.get(url(project.id), {"page": 99})

    assert response.status_code == 404
    error_list(response)


@pytest.mark.django_db
def test_the_default_page_holds_fifty_rows(project, admin, as_reviewer, make_examples):
    make_examples(project, admin, [{"text": f"row {i}"} for i in range(51)])

    body = as_reviewer.get(url(project.id)).json()

    assert body["count"] == 51 and len(body["results"]) == 50 and body["next"]


@pytest.mark.django_db
def test_counts_stay_true_after_reimports_and_refused_imports(project, as_admin):
    rows = [{"external_id": f"r{i}", "text": f"row {i}"} for i in range(3)]
    as_admin.post(url(project.id), rows, format="json")
    as_admin.post(url(project.id), rows, format="json")
    as_admin.post(url(project.id), [{"text": "new"}, {"text": ""}], format="json")

    listed = as_admin.get(url(project.id)).json()
    detail = as_admin.get(f"/api/v1/projects/{project.id}/").json()

    assert listed["count"] == len(listed["results"]) == 3
    assert detail["examples"] == 3
