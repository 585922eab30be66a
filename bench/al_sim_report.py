"""The report of bench/al_sim.py: curves averaged over repetitions, the issue's targets per corpus, the holdout's
coverage of the outside test set, the markdown tables and the SVG of the learning curves."""

from __future__ import annotations

import html
import json
import math
import statistics
from collections import Counter
from pathlib import Path
from typing import Any

from bench._bbc import markdown_table

ARMS = ("queue", "random", "margin")
# Queue arms and the project settings each adds to the product's defaults ("margin": the same queue with
# query_strategy margin, to decide the default strategy in the same run).
QUEUE_ARMS = {"queue": {}, "margin": {"query_strategy": "margin"}}
REASONS = ("uncertain", "suspect", "drift", "random")


def mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.fmean(present) if present else None


def averaged(repeats: list[list[dict]]) -> list[dict]:
    """The rounds of several repetitions averaged key by key (counts of reasons summed, then divided)."""
    out = []
    for r in range(min(len(rounds) for rounds in repeats)):
        rows = [rounds[r] for rounds in repeats]
        reasons: Counter[str] = Counter()
        for row in rows:
            reasons.update(row["leased_by_reason"])
        avg = {"round": r, "leased_by_reason": {k: v / len(rows) for k, v in reasons.items()}}
        for key in ("labels_answered", "answers", "new_labels", "relabels", "relabels_changed", "first_label_share",
                    "settled_leased_again_as_suspect", "macro_f1", "seconds", "answer_s", "train_s", "eval_s",
                    "suspects_answered", "suspects_changed", "detector_precision"):
            avg[key] = mean([row.get(key) for row in rows])
        avg["settled_leased_again_as_suspect_total"] = sum(row["settled_leased_again_as_suspect"] for row in rows)
        out.append(avg)
    return out


def fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def fmt_count(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.1f}"


def round_table(curves: dict[str, dict[str, list[dict]]]) -> str:
    headers = ["corpus", "arm", "round", "labels", "new", "relabels", "changed", "leased u / s / d / r",
               "first labels", "settled re-leased as suspect", "macro-F1", "s / round"]
    rows = []
    for corpus, arms in curves.items():
        for arm, rounds in arms.items():
            for row in rounds:
                reasons = row["leased_by_reason"]
                leased = " / ".join(fmt_count(reasons.get(k, 0)) for k in REASONS) if arm in QUEUE_ARMS and row["round"] else "-"
                rows.append([corpus, arm, row["round"], fmt_count(row["labels_answered"]),
                             fmt_count(row["new_labels"]), fmt_count(row["relabels"]), fmt_count(row["relabels_changed"]),
                             leased, fmt(row["first_label_share"], ".0%"),
                             fmt_count(row["settled_leased_again_as_suspect"]) if arm in QUEUE_ARMS else "-",
                             fmt(row["macro_f1"], ".3f"), fmt(row["seconds"], ".0f")])
    return markdown_table(headers, rows)


def summarize(curves: dict[str, dict[str, list[dict]]]) -> dict[str, dict[str, Any]]:
    """The issue's targets, per corpus: the queue arm against random labeling."""
    out = {}
    for corpus, arms in curves.items():
        if not {"queue", "random"} <= set(arms):
            continue
        queue, rand = arms["queue"], arms["random"]
        n = min(len(queue), len(rand))
        diffs = [queue[r]["macro_f1"] - rand[r]["macro_f1"] for r in range(n)]
        later = diffs[2:] if n > 2 else []
        answered = [row for row in queue[1:] if row["answers"]]
        low_precision = [row for row in answered
                         if (row["detector_precision"] if row["detector_precision"] is not None
                             else (row["suspects_changed"] / row["suspects_answered"] if row["suspects_answered"] else 0.0))
                         < 0.3]
        out[corpus] = {
            "queue_mean_f1": statistics.fmean(row["macro_f1"] for row in queue[1:n]) if n > 1 else None,
            "random_mean_f1": statistics.fmean(row["macro_f1"] for row in rand[1:n]) if n > 1 else None,
            "worst_gap_from_round_2": min(later) if later else None,
            "queue_first_label_share": (sum(row["new_labels"] for row in answered) / sum(row["answers"] for row in answered)
                                        if answered else None),
            "rounds_under_70pct_first_labels_at_low_precision": [row["round"] for row in low_precision
                                                                 if (row["first_label_share"] or 0) < 0.7],
            "settled_leased_again_as_suspect": sum(row["settled_leased_again_as_suspect_total"] for row in queue),
            "queue_relabels": sum(row["relabels"] for row in queue), "queue_relabels_changed": sum(
                row["relabels_changed"] for row in queue),
            "queue_seconds_per_round": mean([row["seconds"] for row in queue[1:]]),
            "random_seconds_per_round": mean([row["seconds"] for row in rand[1:]]),
        }
        if "margin" in arms:
            margin = arms["margin"]
            out[corpus]["margin_mean_f1"] = (statistics.fmean(row["macro_f1"] for row in margin[1:n])
                                             if n > 1 else None)
        s = out[corpus]
        s["targets_met"] = {
            "never_0.01_below_random_from_round_2": s["worst_gap_from_round_2"] is None or s["worst_gap_from_round_2"] >= -0.01,
            "mean_at_least_random": s["queue_mean_f1"] is None or s["queue_mean_f1"] >= s["random_mean_f1"],
            "70pct_first_labels_at_low_precision": not s["rounds_under_70pct_first_labels_at_low_precision"],
            "no_settled_suspect_re_leases": s["settled_leased_again_as_suspect"] == 0,
        }
    return out


def holdout_coverage(runs: dict[str, dict[str, list[list[dict]]]]) -> dict[str, dict[str, Any]]:
    """Issue 12's target, per corpus and arm over every repetition: in how many rounds the served version's
    holdout macro-F1 interval (bootstrap 95%) holds the macro-F1 measured on the large outside test set, among
    the rounds whose holdout could be measured."""
    out: dict[str, dict[str, Any]] = {}
    for corpus, arms in runs.items():
        for arm, repeats in arms.items():
            rows = [row for rounds in repeats for row in rounds]
            measured = []
            for row in rows:
                holdout = row.get("holdout") or {}
                interval = holdout.get("macro_f1_ci")
                if holdout.get("reason") or not interval or holdout.get("macro_f1") is None:
                    continue
                low, high = interval
                measured.append({"round": row["round"], "n": holdout.get("n"), "holdout": holdout["macro_f1"],
                                 "low": low, "high": high, "test": row["macro_f1"],
                                 "covered": low <= row["macro_f1"] <= high})
            out.setdefault(corpus, {})[arm] = {
                "rounds": len(rows), "measured": len(measured), "covered": sum(m["covered"] for m in measured),
                "share": (sum(m["covered"] for m in measured) / len(measured)) if measured else None,
                "mean_abs_error": mean([abs(m["holdout"] - m["test"]) for m in measured]),
                "mean_width": mean([m["high"] - m["low"] for m in measured]),
                "holdout_n": [row.get("holdout", {}).get("n") for row in rows],
                "rows": measured,
            }
    return out


def coverage_table(coverage: dict[str, dict[str, Any]]) -> str:
    headers = ["corpus", "arm", "rounds", "holdout measured", "test F1 inside the interval", "mean |holdout - test|",
               "mean interval width", "holdout size (first / last round)"]
    rows = []
    for corpus, arms in coverage.items():
        for arm, c in arms.items():
            sizes = [n for n in c["holdout_n"] if n is not None]
            rows.append([corpus, arm, c["rounds"], c["measured"],
                         f"{c['covered']} ({fmt(c['share'], '.0%')})", fmt(c["mean_abs_error"], ".3f"),
                         fmt(c["mean_width"], ".3f"), f"{sizes[0]} / {sizes[-1]}" if sizes else "-"])
    return markdown_table(headers, rows)


def summary_table(summary: dict[str, dict[str, Any]]) -> str:
    headers = ["corpus", "queue mean F1 (rounds 1+)", "random mean F1", "worst queue - random (round 2+)",
               "first labels (queue)", "relabels / changed (queue)", "settled re-leased as suspect (all repeats)",
               "s / round queue / random"]
    rows = [[corpus, fmt(s["queue_mean_f1"], ".3f"), fmt(s["random_mean_f1"], ".3f"),
             fmt(s["worst_gap_from_round_2"], "+.3f"), fmt(s["queue_first_label_share"], ".0%"),
             f"{fmt_count(s['queue_relabels'])} / {fmt_count(s['queue_relabels_changed'])}",
             fmt_count(s["settled_leased_again_as_suspect"]),
             f"{fmt(s['queue_seconds_per_round'], '.0f')} / {fmt(s['random_seconds_per_round'], '.0f')}"]
            for corpus, s in summary.items()]
    return markdown_table(headers, rows)


def svg_curves(curves: dict[str, dict[str, list[dict]]], title: str) -> str:
    """Learning curves, one panel per corpus: macro-F1 against labels answered, one line per arm."""
    colours = {"queue": "#0072B2", "random": "#E69F00", "margin": "#009E73"}  # Okabe-Ito
    names = {"full": "BBC full text", "headlines": "BBC headlines"}
    panel_w, panel_h, left, right, top, bottom = 440, 300, 52, 16, 44, 44
    width = panel_w * max(1, len(curves))
    points = [(row["labels_answered"], row["macro_f1"]) for arms in curves.values() for rounds in arms.values()
              for row in rounds if row["macro_f1"] is not None]
    xs = [x for x, _ in points] or [0, 1]
    x_step = next(s for s in (10, 20, 25, 50, 100, 200, 250, 500, 1000, 10_000) if (max(xs) - min(xs)) / s <= 8)
    lo_x = math.floor(min(xs) / x_step) * x_step
    hi_x = max(lo_x + x_step, math.ceil(max(xs) / x_step) * x_step)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {panel_h + 24}" width="{width}" '
           f'height="{panel_h + 24}" font-family="system-ui, sans-serif" font-size="11">',
           f"<title>{html.escape(title)}</title>", f'<rect width="{width}" height="{panel_h + 24}" fill="#fff"/>']
    legend_x = 12
    for arm in [a for a in ARMS if any(a in arms for arms in curves.values())]:
        dash = ' stroke-dasharray="5 4"' if arm == "random" else ""
        out.append(f'<line x1="{legend_x}" x2="{legend_x + 18}" y1="12" y2="12" stroke="{colours[arm]}" '
                   f'stroke-width="2.5"{dash}/><text x="{legend_x + 22}" y="16">{arm} arm</text>')
        legend_x += 100
    for p, (corpus, arms) in enumerate(curves.items()):
        x0, y0 = p * panel_w + left, 24 + top
        ys = [row["macro_f1"] for rounds in arms.values() for row in rounds if row["macro_f1"] is not None] or [0.0, 1.0]
        lo_y = max(0.0, math.floor(min(ys) * 20 - 0.2) / 20)
        hi_y = min(1.0, math.ceil(max(ys) * 20 + 0.2) / 20)
        y_step = 0.05 if hi_y - lo_y <= 0.4 else 0.1
        w, h = panel_w - left - right, panel_h - top - bottom

        def sx(v: float, x0: float = x0, w: float = w) -> float:
            return x0 + (v - lo_x) / (hi_x - lo_x) * w

        def sy(v: float, y0: float = y0, h: float = h, lo_y: float = lo_y, hi_y: float = hi_y) -> float:
            return y0 + (1 - (v - lo_y) / (hi_y - lo_y)) * h

        out.append(f'<text x="{x0 + w / 2:.1f}" y="{y0 - 12}" text-anchor="middle" font-size="13" '
                   f'font-weight="600">{html.escape(names.get(corpus, corpus))}</text>')
        tick = lo_y
        while tick <= hi_y + 1e-6:
            out.append(f'<line x1="{x0}" x2="{x0 + w}" y1="{sy(tick):.1f}" y2="{sy(tick):.1f}" stroke="#e4e8ec"/>'
                       f'<text x="{x0 - 6}" y="{sy(tick) + 3.5:.1f}" text-anchor="end" fill="#59636e">{tick:.2f}</text>')
            tick += y_step
        tick = lo_x
        while tick <= hi_x + 1e-6:
            out.append(f'<line x1="{sx(tick):.1f}" x2="{sx(tick):.1f}" y1="{y0 + h}" y2="{y0 + h + 4}" stroke="#59636e"/>'
                       f'<text x="{sx(tick):.1f}" y="{y0 + h + 16}" text-anchor="middle" fill="#59636e">{tick:.0f}</text>')
            tick += x_step
        out.append(f'<line x1="{x0}" x2="{x0 + w}" y1="{y0 + h}" y2="{y0 + h}" stroke="#59636e"/>')
        out.append(f'<text x="{x0 + w / 2:.1f}" y="{y0 + h + 34}" text-anchor="middle">labels answered '
                   f'(seeds + answers)</text>')
        out.append(f'<text transform="translate({x0 - 40} {y0 + h / 2:.1f}) rotate(-90)" text-anchor="middle">'
                   f'macro-F1, held-out test set</text>')
        for arm, rounds in arms.items():
            pts = [(sx(row["labels_answered"]), sy(row["macro_f1"]), row) for row in rounds if row["macro_f1"] is not None]
            dash = ' stroke-dasharray="5 4"' if arm == "random" else ""
            out.append(f'<polyline points="{" ".join(f"{x:.1f},{y:.1f}" for x, y, _ in pts)}" fill="none" '
                       f'stroke="{colours[arm]}" stroke-width="2"{dash}/>')
            for x, y, row in pts:
                tip = f"{arm}, round {row['round']}: {row['labels_answered']:.0f} labels, macro-F1 {row['macro_f1']:.3f}"
                out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="#fff" stroke="{colours[arm]}" '
                           f'stroke-width="1.8"><title>{html.escape(tip)}</title></circle>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def baseline_comparison(path: Path, curves: dict[str, dict[str, list[dict]]]) -> dict[str, Any]:
    """The queue arm's macro-F1 per round against an earlier run's (e.g. before a change of the product)."""
    old = json.loads(path.read_text())["curves"]
    out = {}
    for corpus, arms in curves.items():
        if corpus in old and "queue" in old[corpus] and "queue" in arms:
            pairs = list(zip(arms["queue"], old[corpus]["queue"], strict=False))
            out[corpus] = {"per_round": [row["macro_f1"] - prev["macro_f1"] for row, prev in pairs],
                           "mean": statistics.fmean(row["macro_f1"] - prev["macro_f1"] for row, prev in pairs)}
    return out

