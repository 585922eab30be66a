"""Queue policy: leases honour the mix, settled examples never come back as suspects, the suspect share
follows the detector's measured precision, the query strategy and cold start pick the uncertain share."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from annotator.models import Example, ExampleScore, ModelVersion, Project, QueueItem
from annotator.selectors.noise import DETECTOR_MIN_REVIEWED, detector_precision
from annotator.services.holdout import HOLDOUT_RULE, HOLDOUT_SHARE, holdout_hash
from annotator.services.pool_embeddings import pool_embeddings_save
from annotator.services.projects import project_update_settings
from annotator.services.queue import interleave, queue_add_many, queue_lease, queue_submit
from annotator.services.queue_policy import adaptive_suspect_share, effective_mix, pick_items

pytestmark = pytest.mark.django_db

DEFAULT_MIX = {"uncertain": 0.6, "suspect": 0.25, "drift": 0.1, "random": 0.05}


# --- weighted round robin ----------------------------------------------------------------------------------
def test_a_lease_of_50_follows_the_default_mix():
    reasons = interleave(DEFAULT_MIX, dict.fromkeys(DEFAULT_MIX, 100), 50)
    assert Counter(reasons) == {"uncertain": 30, "suspect": 12, "drift": 5, "random": 3} or Counter(reasons) == {
        "uncertain": 30, "suspect": 13, "drift": 5, "random": 2}
    # and every prefix stays close to the mix: suspects are interleaved, not drained first
    assert reasons[:4].count("suspect") <= 2 and "uncertain" in reasons[:2]


def test_when_a_reason_runs_out_the_others_fill_in():
    reasons = interleave(DEFAULT_MIX, {"uncertain": 100, "suspect": 3, "drift": 0, "random": 100}, 50)
    counts = Counter(reasons)
    assert len(reasons) == 50 and counts["suspect"] == 3 and counts["drift"] == 0
    assert counts["uncertain"] > 40


def test_zero_share_reasons_are_used_only_when_nothing_else_is_left():
    reasons = interleave({"uncertain": 1.0, "suspect": 0.0}, {"uncertain": 2, "suspect": 5}, 4)
    assert reasons == ["uncertain", "uncertain", "suspect", "suspect"]


def _examples(project: Project, admin, n: int, *, labeled: bool = False, prefix: str = "e") -> list[Example]:
    from annotator.services.examples import examples_import

    rows = [{"external_id": f"{prefix}{i}", "text": f"text {prefix} {i}",
             **({"label": "positive"} if labeled else {})} for i in range(n)]
    result = examples_import(project=project, user=admin, rows=rows)
    return list(Example.objects.filter(id__in=result.ids).order_by("id"))


def test_one_lease_interleaves_reasons_in_proportion(project, admin, annotator):
    # Given high-priority suspects and low-priority uncertain items (priority used to drain suspects first)
    suspects = _examples(project, admin, 40, labeled=True, prefix="s")
    pool = _examples(project, admin, 100, prefix="u")
    queue_add_many(project=project, reason="suspect", items=[(e.id, 2.0, "") for e in suspects])
    queue_add_many(project=project, reason="uncertain", items=[(e.id, 0.5, "") for e in pool[:80]])
    queue_add_many(project=project, reason="random", items=[(e.id, 0.0, "") for e in pool[80:]])

    # When an annotator leases 50
    items = queue_lease(project=project, user=annotator, n=50)

    # Then the reasons follow the mix (drift has none: the others fill in), not the priorities
    counts = Counter(item.reason for item in items)
    assert len(items) == 50
    assert 12 <= counts["suspect"] <= 15, counts
    assert counts["uncertain"] >= 32, counts
    assert len({item.example_id for item in items}) == 50


def test_the_lease_uses_the_effective_mix_of_the_last_rebuild(project, admin, annotator):
    suspects = _examples(project, admin, 40, labeled=True, prefix="s")
    pool = _examples(project, admin, 60, prefix="u")
    queue_add_many(project=project, reason="suspect", items=[(e.id, 2.0, "") for e in suspects])
    queue_add_many(project=project, reason="uncertain", items=[(e.id, 0.5, "") for e in pool])
    Project.objects.filter(pk=project.pk).update(queue_state={"mix": {"uncertain": 0.95, "suspect": 0.05}})
    project.refresh_from_db()
    counts = Counter(item.reason for item in queue_lease(project=project, user=annotator, n=40))
    assert counts["suspect"] == 2 and counts["uncertain"] == 38


# --- the detector and the adaptive share -------------------------------------------------------------------
def test_adaptive_share_keeps_the_configured_share_until_enough_answers():
    assert adaptive_suspect_share(0.25, reviewed=DETECTOR_MIN_REVIEWED - 1, confirmed_errors=0) == 0.25


def test_adaptive_share_drops_when_people_confirm_most_flags_and_rises_when_they_fix_them():
    low = adaptive_suspect_share(0.25, reviewed=10, confirmed_errors=1)  # 9 of 10 flags were right labels
    high = adaptive_suspect_share(0.25, reviewed=10, confirmed_errors=9)
    assert low == pytest.approx(0.05)
    assert 0.25 < high <= 0.5
    assert adaptive_suspect_share(0.25, reviewed=50, confirmed_errors=0) == pytest.approx(0.02)  # the floor
    assert adaptive_suspect_share(0.0, reviewed=50, confirmed_errors=50) == 0.0


def _answered_suspects(project, admin, annotator, *, errors: int, confirmed: int) -> None:
    examples = _examples(project, admin, errors + confirmed, labeled=True, prefix="d")
    queue_add_many(project=project, reason="suspect", items=[(e.id, 1.0, "") for e in examples])
    for i, item in enumerate(queue_lease(project=project, user=annotator, n=errors + confirmed)):
        queue_submit(user=annotator, item_id=item.id, data={"label": "negative" if i < errors else "positive"})


def test_low_measured_precision_leaves_at_least_70_percent_first_labels(project, admin, annotator):
    _answered_suspects(project, admin, annotator, errors=2, confirmed=10)  # precision 0.17 < 0.3
    detector = detector_precision(project)
    assert detector["reviewed"] == 12 and detector["confirmed_errors"] == 2
    mix = effective_mix(project, detector)
    assert mix["suspect"] < 0.3 * 0.25 / 0.5 + 1e-9
    assert 1.0 - mix["suspect"] >= 0.7
    assert sum(mix.values()) == pytest.approx(1.0, abs=1e-5)


def test_the_noise_report_shows_the_detector_precision(project, admin, annotator, as_reviewer):
    _answered_suspects(project, admin, annotator, errors=3, confirmed=1)
    body = as_reviewer.get(f"/api/v1/projects/{project.id}/noise-report/").json()
    assert body["detector"]["reviewed"] == 4
    assert body["detector"]["confirmed_errors"] == 3
    assert body["detector"]["precision"] == 0.75
    assert body["settled"] == 0


# --- the rebuild's picks ------------------------------------------------------------------------------------
def _version(project: Project, *, n_labeled: int, macro_f1: float = 0.8, holdout_cut: float = 0.0) -> ModelVersion:
    """A ready version; its holdout cut defaults to 0 (no example kept for the holdout), so the picks depend on
    the scores alone, whatever ids the examples got."""
    holdout = {"rule": dict(HOLDOUT_RULE), "cut": holdout_cut}
    return ModelVersion.objects.create(project=project, number=1, status=ModelVersion.Status.READY,
                                       snapshot={"n_labeled": n_labeled},
                                       metrics={"macro_f1": macro_f1, "holdout": holdout})


def _scores(version: ModelVersion, examples: list[Example], probs: np.ndarray, **extra) -> None:
    from annotator.services.scoring import save_scores, score_rows

    names = ["positive", "negative", "neutral"][: probs.shape[1]]
    predicted = [names[int(p.argmax())] for p in probs]
    rows = score_rows(version, [e.id for e in examples], probs, predicted, False)
    for row in rows:
        for key, value in extra.items():
            setattr(row, key, value)
    save_scores(version, rows)


def test_settled_examples_are_never_picked_as_suspects(project, admin, annotator):
    labeled = _examples(project, admin, 6, labeled=True, prefix="l")
    version = _version(project, n_labeled=100)
    probs = np.tile([0.1, 0.9], (6, 1))
    _scores(version, labeled, probs, is_issue=True, label_quality=0.1, suggested_label="negative")
    Example.objects.filter(id__in=[e.id for e in labeled[:4]]).update(settled=True, confirmations=2)

    picked, _ = pick_items(project, version, {"suspect": 10, "uncertain": 0, "drift": 0, "random": 0})

    assert {eid for eid, _, _ in picked["suspect"]} == {e.id for e in labeled[4:]}


def test_held_out_suspects_are_rechecked_first(project, admin):
    labeled = _examples(project, admin, 30, labeled=True, prefix="l")  # imported: eligible for the holdout
    held = [e for e in labeled if holdout_hash(e.id) < HOLDOUT_SHARE]
    trained = [e for e in labeled if holdout_hash(e.id) >= HOLDOUT_SHARE]
    assert held and len(trained) >= 2
    version = _version(project, n_labeled=100, holdout_cut=HOLDOUT_SHARE)
    # the training-side flags look worse than the held-out one
    _scores(version, trained[:2], np.tile([0.1, 0.9], (2, 1)), is_issue=True, label_quality=0.05,
            suggested_label="negative")
    _scores(version, held[:1], np.tile([0.3, 0.7], (1, 1)), is_issue=True, label_quality=0.4,
            suggested_label="negative")

    picked, _ = pick_items(project, version, {"suspect": 2})

    first, second = picked["suspect"]
    assert first[0] == held[0].id and first[2].startswith("held-out label in doubt")
    assert first[1] > second[1]  # and it leads the suspects within a lease too
    assert second[0] in {e.id for e in trained[:2]} and not second[2].startswith("held-out")


def test_suspect_explanations_do_not_name_the_suggestion_when_suggestions_are_hidden(project, admin):
    project_update_settings(project=project, settings={"show_suggestions": False})
    labeled = _examples(project, admin, 2, labeled=True, prefix="l")
    version = _version(project, n_labeled=100)
    _scores(version, labeled, np.tile([0.1, 0.9], (2, 1)), is_issue=True, label_quality=0.1,
            suggested_label="negative")
    picked, _ = pick_items(project, version, {"suspect": 10})
    assert picked["suspect"] and all("negative" not in text for _, _, text in picked["suspect"])


def test_examples_kept_for_the_holdout_come_only_as_random_items(project, admin):
    pool = _examples(project, admin, 60, prefix="u")
    production = _examples(project, admin, 20, prefix="p")
    Example.objects.filter(id__in=[e.id for e in production]).update(source="production")
    version = _version(project, n_labeled=100, holdout_cut=HOLDOUT_SHARE)
    everything = pool + production
    _scores(version, everything, np.tile([0.34, 0.33, 0.33], (len(everything), 1)))  # all maximally uncertain
    kept = {e.id for e in everything if holdout_hash(e.id) < HOLDOUT_SHARE}
    assert 3 <= len(kept) <= 40  # 80 ids: about 16 hash below the share

    picked, state = pick_items(project, version, {"uncertain": 80, "drift": 20, "random": 2})

    offered = {eid for reason in ("uncertain", "drift") for eid, _, _ in picked[reason]}
    assert offered and not offered & kept
    assert len(offered) == len(everything) - len(kept)  # everything else was offered
    random_ids = [eid for eid, _, _ in picked["random"]]
    assert len(random_ids) == 2 and set(random_ids) <= kept
    assert all("held out" in text for _, _, text in picked["random"])
    assert state["held_back_for_holdout"] == len(kept)


def test_random_items_fall_back_to_the_pool_once_the_kept_examples_run_out(project, admin):
    pool = _examples(project, admin, 30, prefix="u")
    version = _version(project, n_labeled=100, holdout_cut=HOLDOUT_SHARE)
    _scores(version, pool, np.tile([0.5, 0.3, 0.2], (len(pool), 1)))
    kept = {e.id for e in pool if holdout_hash(e.id) < HOLDOUT_SHARE}

    picked, _ = pick_items(project, version, {"random": len(kept) + 3})

    random_ids = [eid for eid, _, _ in picked["random"]]
    assert len(random_ids) == len(set(random_ids)) == len(kept) + 3
    assert kept <= set(random_ids)


@pytest.mark.parametrize("strategy", ["entropy", "margin", "least_confidence"])
def test_the_uncertain_share_follows_the_query_strategy(project, admin, strategy):
    project_update_settings(project=project, settings={"query_strategy": strategy, "diversity": False})
    pool = _examples(project, admin, 3, prefix="u")
    version = _version(project, n_labeled=100)
    # margin prefers the two-way tie; entropy and least confidence the three-way spread
    probs = np.array([[0.48, 0.47, 0.05], [0.4, 0.3, 0.3], [0.9, 0.05, 0.05]])
    _scores(version, pool, probs)
    picked, state = pick_items(project, version, {"uncertain": 1})
    [(example_id, _, explanation)] = picked["uncertain"]
    expected = pool[0] if strategy == "margin" else pool[1]
    assert example_id == expected.id
    assert explanation.startswith(f"{strategy} strategy") and state["strategy"] == strategy
    assert not state["cold_start"]


def test_cold_start_samples_representative_examples(project, admin):
    pool = _examples(project, admin, 40, prefix="u")
    version = _version(project, n_labeled=12)  # fewer than 10 labels per class for 3 classes
    rng = np.random.default_rng(0)
    # two tight clusters in embedding space; the model is most unsure about cluster A only
    centres = rng.normal(size=(2, 16))
    embeddings = np.vstack([centres[i % 2] + 0.01 * rng.normal(size=16) for i in range(40)])
    pool_embeddings_save(version, 0, [e.id for e in pool], embeddings)
    probs = np.array([[0.34, 0.33, 0.33] if i % 2 == 0 else [0.9, 0.05, 0.05] for i in range(40)])
    _scores(version, pool, probs)

    picked, state = pick_items(project, version, {"uncertain": 2})

    assert state["cold_start"] and "per class" in state["cold_start_reason"]
    chosen = [pool.index(next(e for e in pool if e.id == eid)) % 2 for eid, _, _ in picked["uncertain"]]
    assert sorted(chosen) == [0, 1]  # one from each cluster, not the two most uncertain
    assert all(text.startswith("cold start") for _, _, text in picked["uncertain"])


def test_near_chance_validation_is_a_cold_start_too(project, admin):
    version = _version(project, n_labeled=300, macro_f1=0.35)
    from annotator.services.queue_policy import is_cold_start

    cold, reason = is_cold_start(version, 3)
    assert cold and "near chance" in reason
    assert not is_cold_start(_version_number(project, 2, 300, 0.7), 3)[0]


def _version_number(project, number, n_labeled, f1) -> ModelVersion:
    return ModelVersion.objects.create(project=project, number=number, status=ModelVersion.Status.READY,
                                       snapshot={"n_labeled": n_labeled}, metrics={"macro_f1": f1})


# --- settings ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("values, field", [
    ({"query_strategy": "coin_flip"}, "settings.query_strategy"),
    ({"diversity": "yes"}, "settings.diversity"),
    ({"queue_mix": {"uncertain": -0.1, "random": 0.5}}, "settings.queue_mix.uncertain"),
    ({"queue_mix": {"uncertain": 0, "suspect": 0}}, "settings.queue_mix"),
])
def test_bad_queue_settings_are_a_400_naming_the_field_and_change_nothing(project, as_admin, values, field):
    before = Project.objects.get(pk=project.pk).settings
    response = as_admin.patch(f"/api/v1/projects/{project.id}/", {"settings": values}, format="json")
    assert response.status_code == 400, response.content
    assert field in {error.get("field") for error in response.json()["errors"]}
    assert Project.objects.get(pk=project.pk).settings == before


def test_good_queue_settings_are_stored(project, as_admin):
    response = as_admin.patch(f"/api/v1/projects/{project.id}/", {"settings": {
        "query_strategy": "margin", "diversity": False}}, format="json")
    assert response.status_code == 200, response.content
    project.refresh_from_db()
    assert project.setting("query_strategy") == "margin" and project.setting("diversity") is False
    assert QueueItem.objects.count() == 0
    assert ExampleScore.objects.count() == 0


def test_with_overlap_another_label_and_a_first_label_share_one_activelab_ranking(project, admin, reviewer,
                                                                                  annotator, annotate):
    # Given overlap 2: one labeled item two people disagree on, one they agree on, and two unlabeled items
    # the model is sure about
    project_update_settings(project=project, settings={"overlap": 2})
    disputed, agreed = _examples(project, admin, 2, prefix="l")
    annotate(disputed, annotator, "positive")
    annotate(disputed, reviewer, "negative", kind="label")
    annotate(agreed, annotator, "neutral")
    annotate(agreed, reviewer, "neutral", kind="label")
    pool = _examples(project, admin, 2, prefix="u")
    version = _version(project, n_labeled=100)
    _scores(version, [disputed, agreed], np.array([[0.5, 0.45, 0.05], [0.05, 0.05, 0.9]]))
    _scores(version, pool, np.array([[0.98, 0.01, 0.01], [0.01, 0.98, 0.01]]))

    # When the rebuild picks 1 item for suspect + uncertain
    picked, state = pick_items(project, version, {"suspect": 1, "uncertain": 0, "drift": 0, "random": 0})

    # Then ActiveLab ranked them together and the disputed item wins another label
    assert state["ranking"] == "activelab"
    assert [eid for eid, _, _ in picked["suspect"]] == [disputed.id]
    assert picked["uncertain"] == []


def test_expected_errors_come_from_the_model_then_from_people(project, admin, annotator, as_reviewer):
    # Given four open flags whose given labels the model gives 0.2, 0.2, 0.6 and 0.6
    labeled = _examples(project, admin, 4, labeled=True, prefix="f")
    version = _version(project, n_labeled=100)
    ModelVersion.objects.filter(pk=version.pk).update(metrics={"noise": {"estimated_noise_rate": 0.1}})
    for example, quality in zip(labeled, [0.2, 0.2, 0.6, 0.6], strict=True):
        _scores(version, [example], np.array([[quality, 1 - quality]]), is_issue=True, label_quality=quality,
                suggested_label="negative")

    # Then before any re-check, the model expects (0.8 + 0.8 + 0.4 + 0.4) / 4 = 0.6 of them to be errors
    expected = as_reviewer.get(f"/api/v1/projects/{project.id}/noise-report/").json()["expected_errors"]
    assert expected == {"open": 4, "precision": 0.6, "n": 2, "basis": "model", "reviewed": 0}

    # When people re-checked 12 other flags and found 3 errors, their precision replaces the model's
    _answered_suspects(project, admin, annotator, errors=3, confirmed=9)
    expected = as_reviewer.get(f"/api/v1/projects/{project.id}/noise-report/").json()["expected_errors"]
    assert expected["basis"] == "reviews" and expected["precision"] == 0.25 and expected["n"] == 1
