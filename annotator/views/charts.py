"""Small server-side SVG charts: the pages plot with no script and no internet.

Each function returns a ``SafeString`` of one ``<svg>`` element sized by its ``viewBox`` (it scales to the
width of its container). Every piece of text that reaches the SVG (titles, label names, tooltips) goes
through ``escape``; numbers are formatted here. Colours are the Okabe-Ito palette, readable by people
with colour-vision deficiencies.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import count

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#8C6D31", "#6B6B6B", "#F0E442")
INK, MUTED, GRID = "#1f2328", "#59636e", "#e4e8ec"
_ids = count(1)


def colour(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


@dataclass
class Point:
    x: float
    y: float
    label: str = ""  # shown in the tooltip
    err: float | None = None  # half-height of an error bar


@dataclass
class Series:
    name: str
    points: list[Point] = field(default_factory=list)
    dashed: bool = False


@dataclass
class _Frame:
    width: int
    height: int
    left: int = 48
    right: int = 16
    top: int = 16
    bottom: int = 40

    @property
    def plot_w(self) -> float:
        return self.width - self.left - self.right

    @property
    def plot_h(self) -> float:
        return self.height - self.top - self.bottom


def _num(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".") if value == value else "0"


def _decimals(step: float) -> int:
    """The fewest decimals that write ``step`` exactly (0.25 -> 2, 0.1 -> 1, 5 -> 0)."""
    decimals = 0
    while decimals < 6 and abs(round(step, decimals) - step) > abs(step) * 1e-6:
        decimals += 1
    return decimals


def _fmt_tick(value: float, step: float) -> str:
    if step >= 1 and float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:.{_decimals(step)}f}"


def _fmt_percent(value: float, step: float) -> str:
    return f"{value * 100:.{_decimals(step * 100)}f}%"


def nice_ticks(low: float, high: float, n: int = 5) -> list[float]:
    """About ``n`` round tick values covering [low, high]."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return [0.0, 1.0]
    if high <= low:
        high = low + 1.0
    raw = (high - low) / max(1, n)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    start = math.floor(low / step) * step
    ticks = []
    value = start
    while value <= high + step * 1e-9:
        ticks.append(round(value, 10))
        value += step
    if ticks[-1] < high:
        ticks.append(round(value, 10))
    return ticks


def _open(frame: _Frame, title: str, desc: str = "") -> list[str]:
    uid = next(_ids)
    return [
        f'<svg class="chart" viewBox="0 0 {frame.width} {frame.height}" style="max-width: {round(frame.width * 1.3)}px" role="img" '
        f'aria-labelledby="chart-t{uid} chart-d{uid}" xmlns="http://www.w3.org/2000/svg" '
        f'font-family="system-ui, sans-serif" font-size="11">',
        f'<title id="chart-t{uid}">{escape(title)}</title><desc id="chart-d{uid}">{escape(desc)}</desc>',
    ]


def _empty(title: str, message: str, width: int = 560, height: int = 120) -> SafeString:
    frame = _Frame(width, height)
    out = _open(frame, title, message)
    out.append(f'<rect x="0.5" y="0.5" width="{width - 1}" height="{height - 1}" rx="6" fill="#fafbfc" '
               f'stroke="{GRID}"/>')
    out.append(f'<text x="{width / 2}" y="{height / 2 + 4}" text-anchor="middle" fill="{MUTED}">'
               f'{escape(message)}</text></svg>')
    return mark_safe("".join(out))  # noqa: S308 - every text above is escaped


def _axes(out: list[str], frame: _Frame, x_ticks: list[float], y_ticks: list[float], sx, sy,  # noqa: ANN001
          x_label: str, y_label: str, x_fmt=None, y_fmt=None) -> None:  # noqa: ANN001
    x_step = x_ticks[1] - x_ticks[0] if len(x_ticks) > 1 else 1.0
    y_step = y_ticks[1] - y_ticks[0] if len(y_ticks) > 1 else 1.0
    for tick in y_ticks:
        y = sy(tick)
        out.append(f'<line x1="{frame.left}" x2="{frame.width - frame.right}" y1="{_num(y)}" y2="{_num(y)}" '
                   f'stroke="{GRID}"/>')
        label = y_fmt(tick) if y_fmt else _fmt_tick(tick, y_step)
        out.append(f'<text x="{frame.left - 6}" y="{_num(y + 3.5)}" text-anchor="end" fill="{MUTED}">'
                   f'{escape(label)}</text>')
    for tick in x_ticks:
        x = sx(tick)
        label = x_fmt(tick) if x_fmt else _fmt_tick(tick, x_step)
        out.append(f'<line x1="{_num(x)}" x2="{_num(x)}" y1="{frame.height - frame.bottom}" '
                   f'y2="{frame.height - frame.bottom + 4}" stroke="{MUTED}"/>')
        out.append(f'<text x="{_num(x)}" y="{frame.height - frame.bottom + 16}" text-anchor="middle" '
                   f'fill="{MUTED}">{escape(label)}</text>')
    out.append(f'<line x1="{frame.left}" x2="{frame.width - frame.right}" y1="{frame.height - frame.bottom}" '
               f'y2="{frame.height - frame.bottom}" stroke="{MUTED}"/>')
    if x_label:
        out.append(f'<text x="{_num(frame.left + frame.plot_w / 2)}" y="{frame.height - 6}" text-anchor="middle" '
                   f'fill="{INK}">{escape(x_label)}</text>')
    if y_label:
        cy = frame.top + frame.plot_h / 2
        out.append(f'<text transform="translate(12 {_num(cy)}) rotate(-90)" text-anchor="middle" fill="{INK}">'
                   f'{escape(y_label)}</text>')


def _legend(out: list[str], names: Sequence[str], x: float, y: float, *, dashed: Sequence[bool] = ()) -> None:
    offset = 0.0
    for i, name in enumerate(names):
        dash = ' stroke-dasharray="4 3"' if i < len(dashed) and dashed[i] else ""
        out.append(f'<line x1="{_num(x + offset)}" x2="{_num(x + offset + 16)}" y1="{_num(y)}" y2="{_num(y)}" '
                   f'stroke="{colour(i)}" stroke-width="3"{dash}/>')
        out.append(f'<text x="{_num(x + offset + 20)}" y="{_num(y + 4)}" fill="{INK}">{escape(name)}</text>')
        offset += 28 + 6.5 * len(name)


def line_chart(
    series: Sequence[Series],
    *,
    title: str,
    x_label: str = "",
    y_label: str = "",
    y_range: tuple[float, float] | None = None,
    width: int = 560,
    height: int = 260,
    empty: str = "No data yet",
    y_percent: bool = False,
    x_integer: bool = False,
) -> SafeString:
    """Lines with markers (and optional error bars) over a numeric x axis (``x_integer``: ticks only at
    whole numbers, for counts such as version numbers)."""
    points = [p for s in series for p in s.points if p.y is not None and math.isfinite(p.y)]
    if not points:
        return _empty(title, empty, width)
    legend = len(series) > 1
    frame = _Frame(width, height, top=30 if legend else 16)
    xs = [p.x for p in points]
    lo_x, hi_x = min(xs), max(xs)
    if hi_x == lo_x:
        lo_x, hi_x = lo_x - 1, hi_x + 1
    if y_range:
        lo_y, hi_y = y_range
    else:
        lows = [p.y - (p.err or 0) for p in points]
        highs = [p.y + (p.err or 0) for p in points]
        lo_y, hi_y = min(lows), max(highs)
        pad = (hi_y - lo_y) * 0.1 or abs(hi_y) * 0.1 or 1.0
        # Rates, shares and distances are never negative: the axis starts at zero for them.
        lo_y, hi_y = (lo_y - pad if lo_y < 0 else max(0.0, lo_y - pad)), hi_y + pad
    x_ticks = nice_ticks(lo_x, hi_x, 6)
    if x_integer:
        x_ticks = [t for t in x_ticks if float(t).is_integer()] or x_ticks
    y_ticks = nice_ticks(lo_y, hi_y, 4) if not y_range else nice_ticks(*y_range, 4)
    lo_x, hi_x = min(lo_x, x_ticks[0]), max(hi_x, x_ticks[-1])
    lo_y, hi_y = min(lo_y, y_ticks[0]), max(hi_y, y_ticks[-1])

    def sx(v: float) -> float:
        return frame.left + (v - lo_x) / (hi_x - lo_x) * frame.plot_w

    def sy(v: float) -> float:
        return frame.top + (1 - (v - lo_y) / (hi_y - lo_y)) * frame.plot_h

    desc = "; ".join(f"{s.name}: {len(s.points)} points" for s in series)
    out = _open(frame, title, desc)
    y_step = y_ticks[1] - y_ticks[0] if len(y_ticks) > 1 else 1.0
    y_fmt = (lambda v: _fmt_percent(v, y_step)) if y_percent else None
    _axes(out, frame, x_ticks, y_ticks, sx, sy, x_label, y_label, y_fmt=y_fmt)
    for i, s in enumerate(series):
        pts = [p for p in s.points if p.y is not None and math.isfinite(p.y)]
        if not pts:
            continue
        c = colour(i)
        dash = ' stroke-dasharray="5 4"' if s.dashed else ""
        path = " ".join(f"{_num(sx(p.x))},{_num(sy(p.y))}" for p in pts)
        out.append(f'<polyline points="{path}" fill="none" stroke="{c}" stroke-width="2"{dash}/>')
        for p in pts:
            if p.err:
                out.append(f'<line x1="{_num(sx(p.x))}" x2="{_num(sx(p.x))}" y1="{_num(sy(p.y - p.err))}" '
                           f'y2="{_num(sy(p.y + p.err))}" stroke="{c}" stroke-width="1.5"/>')
            value = f"{p.y:.1%}" if y_percent else f"{p.y:.3g}"
            tip = f"{s.name} {p.label}: {value}".strip()
            out.append(f'<circle cx="{_num(sx(p.x))}" cy="{_num(sy(p.y))}" r="3.5" fill="#fff" stroke="{c}" '
                       f'stroke-width="2"><title>{escape(tip)}</title></circle>')
    if legend:
        _legend(out, [s.name for s in series], frame.left, 14, dashed=[s.dashed for s in series])
    out.append("</svg>")
    return mark_safe("".join(out))  # noqa: S308 - every text above is escaped


def stacked_bars(
    categories: Sequence[str],
    stacks: dict[str, Sequence[float]],
    *,
    title: str,
    x_label: str = "",
    y_label: str = "share",
    width: int = 560,
    height: int = 260,
    marks: Sequence[bool] = (),
    empty: str = "No data yet",
) -> SafeString:
    """One bar per category, stacked by series (shares of 0..1). ``marks`` flags bars (e.g. alerts)."""
    if not categories or not stacks:
        return _empty(title, empty, width)
    frame = _Frame(width, height, top=30)
    n = len(categories)
    slot = frame.plot_w / n
    bar = max(2.0, slot * 0.72)
    y_ticks = [0.0, 0.25, 0.5, 0.75, 1.0]

    def sy(v: float) -> float:
        return frame.top + (1 - v) * frame.plot_h

    out = _open(frame, title, f"{n} bars, {len(stacks)} series")
    step = max(1, math.ceil(n / 10))
    x_ticks_idx = list(range(0, n, step))
    _axes(out, frame, [], y_ticks, lambda v: 0, sy, x_label, y_label, y_fmt=lambda v: f"{v:.0%}")
    for j in x_ticks_idx:
        x = frame.left + slot * (j + 0.5)
        out.append(f'<text x="{_num(x)}" y="{frame.height - frame.bottom + 16}" text-anchor="middle" '
                   f'fill="{MUTED}">{escape(categories[j])}</text>')
    names = list(stacks)
    for j in range(n):
        x = frame.left + slot * j + (slot - bar) / 2
        base = 0.0
        for i, name in enumerate(names):
            values = stacks[name]
            value = float(values[j]) if j < len(values) and values[j] is not None else 0.0
            if value <= 0:
                continue
            y0, y1 = sy(base), sy(min(1.0, base + value))
            out.append(f'<rect x="{_num(x)}" y="{_num(y1)}" width="{_num(bar)}" height="{_num(max(0.0, y0 - y1))}" '
                       f'fill="{colour(i)}"><title>{escape(f"{categories[j]} · {name}: {value:.0%}")}</title></rect>')
            base += value
        if j < len(marks) and marks[j]:
            out.append(f'<text x="{_num(x + bar / 2)}" y="{frame.top - 3}" text-anchor="middle" fill="#D55E00" '
                       f'font-weight="700">!<title>alert</title></text>')
    _legend(out, names, frame.left, 12)
    out.append("</svg>")
    return mark_safe("".join(out))  # noqa: S308 - every text above is escaped


def bar_chart(
    labels: Sequence[str],
    values: Sequence[float | None],
    *,
    title: str,
    value_max: float | None = None,
    percent: bool = True,
    width: int = 420,
    empty: str = "No data yet",
) -> SafeString:
    """Horizontal bars, one per label (e.g. the estimated noise rate of each class)."""
    if not labels:
        return _empty(title, empty, width)
    row = 24
    left = min(180, 24 + 7 * max(len(label) for label in labels))
    height = 12 + row * len(labels) + 8
    frame = _Frame(width, height, left=left, right=60, top=8, bottom=8)
    top_value = value_max or max([v for v in values if v is not None] or [1.0]) or 1.0
    out = _open(frame, title, ", ".join(f"{label}: {v}" for label, v in zip(labels, values, strict=False)))
    for i, (label, value) in enumerate(zip(labels, values, strict=False)):
        y = frame.top + i * row
        out.append(f'<text x="{left - 8}" y="{y + 15}" text-anchor="end" fill="{INK}">{escape(label)}</text>')
        out.append(f'<rect x="{left}" y="{y + 4}" width="{_num(frame.plot_w)}" height="14" rx="3" fill="{GRID}"/>')
        if value is None:
            text = "n/a"
        else:
            w = max(0.0, min(1.0, value / top_value)) * frame.plot_w
            out.append(f'<rect x="{left}" y="{y + 4}" width="{_num(w)}" height="14" rx="3" fill="{colour(0)}"/>')
            text = f"{value:.1%}" if percent else f"{value:.3g}"
        out.append(f'<text x="{_num(left + frame.plot_w + 6)}" y="{y + 15}" fill="{INK}">{escape(text)}</text>')
    out.append("</svg>")
    return mark_safe("".join(out))  # noqa: S308 - every text above is escaped


def heatmap(
    matrix: Sequence[Sequence[float]] | None,
    row_labels: Sequence[str],
    col_labels: Sequence[str],
    *,
    title: str,
    x_label: str = "predicted",
    y_label: str = "true",
    empty: str = "No confusion matrix for this version",
) -> SafeString:
    """A confusion matrix: cell shade by the share of its row, the count written in the cell."""
    if not matrix or not row_labels:
        return _empty(title, empty)
    k = len(row_labels)
    cell = max(18, min(44, 360 // max(1, k)))
    label_w = min(150, 16 + 7 * max(len(label) for label in row_labels))
    top = 20 + min(110, 10 + 6 * max(len(label) for label in col_labels))
    width = label_w + cell * len(col_labels) + 28
    height = top + cell * k + 12
    frame = _Frame(width, height, left=label_w, top=top, bottom=12)
    total = sum(sum(r) for r in matrix)
    out = _open(frame, title, f"{k} by {len(col_labels)} matrix over {total} examples; rows {y_label}, columns {x_label}")
    out.append(f'<text x="{label_w + cell * len(col_labels) / 2}" y="12" text-anchor="middle" fill="{INK}">'
               f'{escape(x_label)} →</text>')
    out.append(f'<text transform="translate(10 {top + cell * k / 2}) rotate(-90)" text-anchor="middle" '
               f'fill="{INK}">{escape(y_label)} →</text>')
    for j, label in enumerate(col_labels):
        x = label_w + cell * (j + 0.5)
        out.append(f'<text transform="translate({_num(x + 4)} {top - 6}) rotate(-50)" fill="{MUTED}">'
                   f'{escape(label)}</text>')
    for i, label in enumerate(row_labels):
        row = matrix[i] if i < len(matrix) else []
        row_total = sum(row) or 1
        y = top + cell * i
        out.append(f'<text x="{label_w - 6}" y="{_num(y + cell / 2 + 4)}" text-anchor="end" fill="{MUTED}">'
                   f'{escape(label)}</text>')
        for j in range(len(col_labels)):
            value = row[j] if j < len(row) else 0
            share = value / row_total
            shade = _blend(share, diagonal=i == j)
            text_fill = "#fff" if share > 0.55 else INK
            x = label_w + cell * j
            tip = f"true {label}, predicted {col_labels[j]}: {value} ({share:.0%} of the row)"
            out.append(f'<rect x="{x}" y="{y}" width="{cell - 1}" height="{cell - 1}" fill="{shade}">'
                       f'<title>{escape(tip)}</title></rect>')
            if cell >= 24:
                out.append(f'<text x="{_num(x + cell / 2)}" y="{_num(y + cell / 2 + 4)}" text-anchor="middle" '
                           f'fill="{text_fill}" pointer-events="none">{int(value)}</text>')
    out.append("</svg>")
    return mark_safe("".join(out))  # noqa: S308 - every text above is escaped


def _blend(share: float, *, diagonal: bool) -> str:
    """White to blue (correct) or white to vermillion (errors) by the share of the row."""
    target = (0x00, 0x72, 0xB2) if diagonal else (0xD5, 0x5E, 0x00)
    s = max(0.0, min(1.0, share)) ** 0.7
    r, g, b = (round(255 + (t - 255) * s) for t in target)
    return f"#{r:02x}{g:02x}{b:02x}"


def reliability_diagram(
    bins_before: Sequence[dict] | None,
    bins_after: Sequence[dict] | None,
    *,
    title: str,
    width: int = 360,
    height: int = 320,
) -> SafeString:
    """Accuracy against confidence per bin, before and after temperature scaling, with the diagonal."""
    series = []
    for name, bins, dashed in (("before", bins_before, True), ("after", bins_after, False)):
        points = [
            Point(b["confidence"], b["accuracy"], label=f"{b['count']} predictions")
            for b in bins or [] if b.get("count") and b.get("confidence") is not None
        ]
        if points:
            series.append((name, points, dashed))
    if not series:
        return _empty(title, "No calibration data for this version", width)
    frame = _Frame(width, height, top=30)

    def sx(v: float) -> float:
        return frame.left + v * frame.plot_w

    def sy(v: float) -> float:
        return frame.top + (1 - v) * frame.plot_h

    out = _open(frame, title, "; ".join(f"{name}: {len(points)} bins" for name, points, _ in series))
    ticks = [0.0, 0.25, 0.5, 0.75, 1.0]
    _axes(out, frame, ticks, ticks, sx, sy, "confidence", "accuracy")
    out.append(f'<line x1="{_num(sx(0))}" y1="{_num(sy(0))}" x2="{_num(sx(1))}" y2="{_num(sy(1))}" '
               f'stroke="{MUTED}" stroke-dasharray="2 3"><title>perfect calibration</title></line>')
    for i, (name, points, dashed) in enumerate(series):
        c = colour(i)
        dash = ' stroke-dasharray="5 4"' if dashed else ""
        path = " ".join(f"{_num(sx(p.x))},{_num(sy(p.y))}" for p in points)
        out.append(f'<polyline points="{path}" fill="none" stroke="{c}" stroke-width="2"{dash}/>')
        for p in points:
            tip = f"{name}: confidence {p.x:.2f}, accuracy {p.y:.2f} ({p.label})"
            out.append(f'<circle cx="{_num(sx(p.x))}" cy="{_num(sy(p.y))}" r="3.5" fill="#fff" stroke="{c}" '
                       f'stroke-width="2"><title>{escape(tip)}</title></circle>')
    _legend(out, [name for name, _, _ in series], frame.left, 14, dashed=[d for _, _, d in series])
    out.append("</svg>")
    return mark_safe("".join(out))  # noqa: S308 - every text above is escaped


def kappa_heatmap(names: Sequence[str], kappas: dict[tuple[str, str], tuple[float | None, int]], *,
                  title: str, empty: str = "No two annotators answered the same item yet") -> SafeString:
    """A symmetric matrix of Cohen's kappa per pair: blue for agreement beyond chance, vermillion for below,
    grey where the pair shared no item or kappa is undefined; the value and the shared items in the tooltip."""
    if len(names) < 2 or not kappas:
        return _empty(title, empty)
    k = len(names)
    cell = max(24, min(48, 400 // k))
    label_w = min(150, 16 + 7 * max(len(name) for name in names))
    top = 20 + min(110, 10 + 6 * max(len(name) for name in names))
    width, height = label_w + cell * k + 16, top + cell * k + 12
    frame = _Frame(width, height, left=label_w, top=top, bottom=12)
    out = _open(frame, title, f"Cohen's kappa for each pair of {k} annotators over the items both answered")
    for j, name in enumerate(names):
        x = label_w + cell * (j + 0.5)
        out.append(f'<text transform="translate({_num(x + 4)} {top - 6}) rotate(-50)" fill="{MUTED}">'
                   f'{escape(name)}</text>')
    for i, row_name in enumerate(names):
        y = top + cell * i
        out.append(f'<text x="{label_w - 6}" y="{_num(y + cell / 2 + 4)}" text-anchor="end" fill="{MUTED}">'
                   f'{escape(row_name)}</text>')
        for j, col_name in enumerate(names):
            x = label_w + cell * j
            if i == j:
                out.append(f'<rect x="{x}" y="{y}" width="{cell - 1}" height="{cell - 1}" fill="#f6f8fa"/>')
                continue
            kappa, n = kappas.get((row_name, col_name), kappas.get((col_name, row_name), (None, 0)))
            if kappa is None:
                fill, text, tip = "#eceff2", "—", f"{row_name} and {col_name}: {n} shared item(s), no kappa"
            else:
                target = (0x00, 0x72, 0xB2) if kappa >= 0 else (0xD5, 0x5E, 0x00)
                s = min(1.0, abs(kappa)) ** 0.8
                r, g, b = (round(255 + (t - 255) * s) for t in target)
                fill, text = f"#{r:02x}{g:02x}{b:02x}", f"{kappa:.2f}"
                tip = f"{row_name} and {col_name}: kappa {kappa:.2f} over {n} shared item(s)"
            ink = "#fff" if kappa is not None and abs(kappa) > 0.55 else INK
            out.append(f'<rect x="{x}" y="{y}" width="{cell - 1}" height="{cell - 1}" fill="{fill}">'
                       f'<title>{escape(tip)}</title></rect>')
            out.append(f'<text x="{_num(x + cell / 2)}" y="{_num(y + cell / 2 + 4)}" text-anchor="middle" '
                       f'fill="{ink}" pointer-events="none">{text}</text>')
    out.append("</svg>")
    return mark_safe("".join(out))  # noqa: S308 - every text above is escaped
