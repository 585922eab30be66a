"""The SVG chart helpers: escaped text, empty states, round ticks."""

from __future__ import annotations

from annotator.views import charts


def test_text_in_a_chart_is_escaped():
    svg = charts.bar_chart(["<b>x</b>"], [0.5], title='Noise "rates" & <more>')

    assert "<b>x</b>" not in svg
    assert "&lt;b&gt;x&lt;/b&gt;" in svg
    assert "Noise &quot;rates&quot; &amp; &lt;more&gt;" in svg


def test_charts_without_data_say_so():
    assert "No data yet" in charts.line_chart([charts.Series("a", [])], title="t")
    assert "nothing" in charts.heatmap(None, [], [], title="t", empty="nothing")
    assert "No calibration data" in charts.reliability_diagram([], None, title="t")
    assert "No data yet" in charts.stacked_bars([], {}, title="t")


def test_a_line_chart_draws_every_point_with_a_tooltip():
    series = charts.Series("macro-F1", [charts.Point(100, 0.5, "v1"), charts.Point(300, 0.7, "v2", err=0.05)])

    svg = charts.line_chart([series], title="curve", y_range=(0, 1))

    assert svg.startswith('<svg class="chart" viewBox=')
    assert svg.count("<circle") == 2
    assert "macro-F1 v2: 0.7" in svg


def test_the_confusion_matrix_writes_counts():
    svg = charts.heatmap([[5, 1], [2, 7]], ["a", "b"], ["a", "b"], title="cm")

    assert svg.count("<rect") == 4
    assert ">7</text>" in svg
    assert "true b, predicted a: 2 (22% of the row)" in svg


def test_ticks_are_round_and_cover_the_range():
    assert charts.nice_ticks(0, 1, 4) == [0.0, 0.25, 0.5, 0.75, 1.0]
    ticks = charts.nice_ticks(37, 912, 5)
    assert ticks[0] <= 37 and ticks[-1] >= 912
    assert all(t % 100 == 0 or t % 200 == 0 for t in ticks)
