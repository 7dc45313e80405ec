"""Charts drawn on the server as SVG: horizontal bars, escaped labels, no script."""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup, escape

ROW, LABEL_WIDTH, BAR_WIDTH, VALUE_WIDTH = 22, 200, 320, 90


def bars(rows: Sequence[tuple[str, float]], *, unit: str = "", title: str = "", digits: int = 0) -> Markup:
    """One bar per (label, value), scaled to the largest value; an empty chart says so."""
    if not rows:
        return Markup('<p class="empty">{}</p>').format(f"no data for {title}" if title else "no data")
    top = max((value for _, value in rows), default=0) or 1
    height = ROW * len(rows) + 4
    width = LABEL_WIDTH + BAR_WIDTH + VALUE_WIDTH
    parts = [
        f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" width="100%" '
        f'preserveAspectRatio="xMinYMin meet"><title>{escape(title)}</title>'
    ]
    for n, (label, value) in enumerate(rows):
        y = n * ROW + 2
        length = max(1.0, BAR_WIDTH * value / top) if value > 0 else 0.0
        shown = escape(label if len(label) <= 30 else label[:29] + "…")
        parts.append(
            f'<text x="{LABEL_WIDTH - 6}" y="{y + 15}" text-anchor="end">{shown}</text>'
            f'<rect x="{LABEL_WIDTH}" y="{y + 3}" width="{length:.1f}" height="{ROW - 6}" rx="2"></rect>'
            f'<text x="{LABEL_WIDTH + length + 6:.1f}" y="{y + 15}">{value:,.{digits}f}{escape(unit)}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 (every label went through escape() above)
