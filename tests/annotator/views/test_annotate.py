"""The annotate page: leased items through services.queue, the stage partial, skip, undo, escaping."""

from __future__ import annotations

import re

from django.urls import reverse

from annotator.models import Annotation, QueueItem
from annotator.services.projects import project_update_settings
from tests.annotator.views import factories


def _item_ids(html: str) -> list[int]:
    return [int(i) for i in re.findall(r'<article class="item" id="item-(\d+)"', html)]


def test_the_page_leases_the_item_shown_and_the_next_one(project, annotator, queued, page_client):
    html = page_client(annotator).get(reverse("annotate", args=[project.id])).content.decode()

    ids = _item_ids(html)
    assert len(ids) == 2
    leased = QueueItem.objects.filter(id__in=ids, status="leased", leased_by=annotator).count()
    assert leased == 2
    assert html.count(" hidden>") >= 1  # the prefetched item waits hidden
    assert "the model hesitates between positive and negative (item 0)" in html
    assert 'class="badge reason-uncertain"' in html


def test_submitting_records_the_annotation_and_answers_the_stage(project, annotator, queued, page_client, htmx):
    client = page_client(annotator)
    first = _item_ids(client.get(reverse("annotate", args=[project.id])).content.decode())[0]

    response = client.post(reverse("annotate-submit", args=[project.id, first]), {"label": "negative"}, headers=htmx)

    html = response.content.decode()
    item = QueueItem.objects.get(id=first)
    assert item.status == "done" and item.done_by == annotator
    assert Annotation.objects.get(queue_item=item).labels == ["negative"]
    assert "<html" not in html  # the partial only
    assert first not in _item_ids(html) and len(_item_ids(html)) == 2
    assert '<strong id="session-count">1</strong>' in html


def test_a_plain_form_post_redirects_back_to_the_page(project, annotator, queued, page_client):
    client = page_client(annotator)
    first = _item_ids(client.get(reverse("annotate", args=[project.id])).content.decode())[0]

    response = client.post(reverse("annotate-submit", args=[project.id, first]), {"label": "positive"})

    assert response.status_code == 302
    assert Annotation.objects.filter(queue_item_id=first).exists()


def test_a_submit_without_a_label_asks_for_one(project, annotator, queued, page_client, htmx):
    client = page_client(annotator)
    first = _item_ids(client.get(reverse("annotate", args=[project.id])).content.decode())[0]

    html = client.post(reverse("annotate-submit", args=[project.id, first]), {}, headers=htmx).content.decode()

    assert not Annotation.objects.filter(queue_item_id=first).exists()
    assert f'data-retry-item="{first}"' in html
    assert "pick one label" in html


def test_another_users_item_is_not_theirs_to_answer(project, annotator, reviewer, queued, page_client, htmx):
    first = _item_ids(page_client(reviewer).get(reverse("annotate", args=[project.id])).content.decode())[0]

    html = page_client(annotator).post(reverse("annotate-submit", args=[project.id, first]), {"label": "positive"},
                                       headers=htmx).content.decode()

    assert not Annotation.objects.filter(queue_item_id=first).exists()
    assert "Not saved" in html


def test_skip_gives_the_item_back_and_shows_two_others(project, annotator, queued, page_client, htmx):
    client = page_client(annotator)
    first = _item_ids(client.get(reverse("annotate", args=[project.id])).content.decode())[0]

    html = client.post(reverse("annotate-skip", args=[project.id, first]), headers=htmx).content.decode()

    assert QueueItem.objects.get(id=first).status == "pending"
    assert first not in _item_ids(html)
    assert len(_item_ids(html)) == 2


def test_skipping_the_last_item_leaves_it_free_for_others(project, admin, annotator, page_client, htmx):
    factories.queued_examples(project, admin, n=1)
    client = page_client(annotator)
    only = _item_ids(client.get(reverse("annotate", args=[project.id])).content.decode())[0]

    html = client.post(reverse("annotate-skip", args=[project.id, only]), headers=htmx).content.decode()

    assert _item_ids(html) == []
    assert QueueItem.objects.get(id=only).status == "pending"


def test_undo_reopens_the_last_answer_and_the_new_answer_wins(project, annotator, queued, page_client, htmx):
    client = page_client(annotator)
    first = _item_ids(client.get(reverse("annotate", args=[project.id])).content.decode())[0]
    client.post(reverse("annotate-submit", args=[project.id, first]), {"label": "negative"}, headers=htmx)
    old = Annotation.objects.get(queue_item_id=first)

    html = client.get(reverse("annotate", args=[project.id]) + "?reopen=last", headers=htmx).content.decode()
    assert f'data-item-id="c{old.id}"' in html
    assert "you answered <em>negative</em>" in html
    client.post(reverse("annotate-correct", args=[project.id, old.id]), {"label": "positive"}, headers=htmx)

    answers = list(Annotation.objects.filter(example=old.example).order_by("id").values_list("labels", flat=True))
    assert answers == [["negative"], ["positive"]]  # append-only: the old answer stays
    old.example.refresh_from_db()
    assert [link.label.name for link in old.example.current_labels.all()] == ["positive"]


def test_undo_with_nothing_answered_says_so(project, annotator, queued, page_client, htmx):
    html = page_client(annotator).get(reverse("annotate", args=[project.id]) + "?reopen=last",
                                      headers=htmx).content.decode()

    assert "no earlier answer" in html


def test_nobody_corrects_another_users_answer(project, annotator, reviewer, queued, page_client, htmx):
    client = page_client(annotator)
    first = _item_ids(client.get(reverse("annotate", args=[project.id])).content.decode())[0]
    client.post(reverse("annotate-submit", args=[project.id, first]), {"label": "negative"}, headers=htmx)
    answer = Annotation.objects.get(queue_item_id=first)

    response = page_client(reviewer).post(reverse("annotate-correct", args=[project.id, answer.id]),
                                          {"label": "positive"}, headers=htmx)

    assert response.status_code == 404
    assert Annotation.objects.filter(example=answer.example).count() == 1


def test_text_is_escaped_and_readable(project, admin, annotator, page_client):
    factories.queued_examples(project, admin, n=1, texts=["<script>alert('x')</script>\n  second line"])

    html = page_client(annotator).get(reverse("annotate", args=[project.id])).content.decode()

    assert "<script>alert" not in html
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;\n  second line" in html


def test_the_suggestion_shows_and_hides_with_the_project_setting(project, admin, annotator, page_client):
    examples = factories.queued_examples(project, admin, n=1)
    version = factories.model_version(project, 1, serving=True)
    score = examples[0].scores.create(model_version=version, probs=[0.1, 0.83, 0.07], predicted=["negative"],
                                      confidence=0.83, entropy=0.4, margin=0.7)
    examples[0].latest_score = score
    examples[0].save(update_fields=["latest_score"])
    client = page_client(annotator)

    shown = client.get(reverse("annotate", args=[project.id])).content.decode()
    project_update_settings(project=project, settings={"show_suggestions": False})
    hidden = client.get(reverse("annotate", args=[project.id])).content.decode()

    assert "Model suggests <strong>negative</strong>" in shown and "0.83" in shown
    assert "Model suggests" not in hidden


def test_guidelines_are_shown_escaped(project, annotator, queued, page_client):
    project_update_settings(project=project, settings={"guidelines": "Use <b>negative</b> for sarcasm.\n\nAsk Rita."})

    html = page_client(annotator).get(reverse("annotate", args=[project.id])).content.decode()

    assert "Use &lt;b&gt;negative&lt;/b&gt; for sarcasm." in html


def test_a_multi_label_project_offers_checkboxes(multi_project, admin, reviewer, page_client, htmx):
    factories.queued_examples(multi_project, admin, n=2)
    client = page_client(reviewer)
    html = client.get(reverse("annotate", args=[multi_project.id])).content.decode()
    first = _item_ids(html)[0]

    client.post(reverse("annotate-submit", args=[multi_project.id, first]), {"label": ["tech", "sports"]},
                headers=htmx)

    assert 'type="checkbox" name="label" value="sports"' in html
    assert Annotation.objects.get(queue_item_id=first).labels == ["sports", "tech"]


def test_an_empty_queue_says_so(project, annotator, page_client):
    html = page_client(annotator).get(reverse("annotate", args=[project.id])).content.decode()

    assert "The queue is empty" in html
