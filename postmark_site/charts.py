"""The admin's SVG charts, drawn on the server so that its pages need no script and no CDN: the
dashboard's line chart of sent / delivered / bounced per bucket (``chart_svg``, from
``stats.outbound``'s buckets) and the System page's sparklines of a queue over the last day
(``sparkline_svg``)."""

from __future__ import annotations

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from stats.outbound import WINDOWS, Bucket
from stats.system import TREND_HOURS

SERIES = (
    ("sent", "Sent", "#3b82c4"),
    ("delivered", "Delivered", "#2f9e44"),
    ("bounced", "Bounced", "#d9480f"),
)


def chart_svg(buckets: list[Bucket], window: str, *, width=640, height=180, title="") -> SafeString:
    """A line chart of sent / delivered / bounced per bucket, as inline SVG (no script)."""
    left, right, top, bottom = 44, 8, 10, 26
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = max((getattr(b.counts, key) for b in buckets for key, _, _ in SERIES), default=0)
    ymax = _nice_ceiling(peak)
    n = max(len(buckets), 1)

    def x(i):
        return left + (plot_w * (i + 0.5) / n)

    def y(v):
        return top + plot_h - (plot_h * v / ymax)

    parts = []
    for frac in (0, 0.5, 1):
        gy = top + plot_h - plot_h * frac
        parts.append(
            format_html(
                '<line x1="{}" y1="{}" x2="{}" y2="{}" class="grid"/>'
                '<text x="{}" y="{}" class="ylabel" text-anchor="end">{}</text>',
                left,
                gy,
                width - right,
                gy,
                left - 6,
                gy + 4,
                _short(ymax * frac),
            )  # fmt: skip
        )
    label_every = max(1, n // 6)
    fmt = "%H:00" if WINDOWS[window][2] == "hour" else "%b %d"
    for i, bucket in enumerate(buckets):
        if i % label_every == 0 or i == n - 1:
            parts.append(
                format_html(
                    '<text x="{}" y="{}" class="xlabel" text-anchor="middle">{}</text>',
                    x(i),
                    height - 8,
                    bucket.start.strftime(fmt),
                )  # fmt: skip
            )
    for key, label, colour in SERIES:
        points = " ".join(
            f"{x(i):.1f},{y(getattr(b.counts, key)):.1f}" for i, b in enumerate(buckets)
        )
        parts.append(
            format_html(
                '<polyline points="{}" fill="none" stroke="{}" stroke-width="2" '
                'class="series series-{}"><title>{}</title></polyline>',
                points,
                colour,
                key,
                label,
            )  # fmt: skip
        )
    # Invisible hover targets with a tooltip per bucket.
    for i, b in enumerate(buckets):
        c = b.counts
        parts.append(
            format_html(
                '<rect x="{}" y="{}" width="{}" height="{}" class="hover">'
                "<title>{}: {} sent, {} delivered, {} bounced, {} SMTP API errors</title></rect>",
                x(i) - plot_w / n / 2,
                top,
                plot_w / n,
                plot_h,
                b.start.strftime("%Y-%m-%d %H:00 UTC" if fmt == "%H:00" else "%Y-%m-%d"),
                c.sent,
                c.delivered,
                c.bounced,
                c.errors,
            )  # fmt: skip
        )
    legend = format_html_join(
        "",
        '<tspan fill="{}" dx="{}">■ {}</tspan>',
        ((colour, 0 if i == 0 else 12, label) for i, (_, label, colour) in enumerate(SERIES)),
    )
    body = format_html_join("", "{}", ((p,) for p in parts))
    return format_html(
        '<svg class="pm-chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" '
        'width="100%" role="img" aria-label="{t}"><title>{t}</title>{body}'
        '<text x="{lx}" y="{ly}" class="legend">{legend}</text></svg>',
        w=width, h=height, t=title or WINDOWS[window][0], body=body,
        lx=left + 4, ly=top + 10, legend=legend,
    )  # fmt: skip


def _nice_ceiling(value: int) -> int:
    if value <= 4:
        return 4
    magnitude = 10 ** (len(str(int(value))) - 1)
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * magnitude:
            return int(step * magnitude)
    return int(10 * magnitude)


def _short(value: float) -> str:
    if value >= 1_000_000:
        return f"{value / 1_000_000:g}M"
    if value >= 1000:
        return f"{value / 1000:g}k"
    return f"{value:g}"


def sparkline_svg(values: list[int], title: str, width: int = 160, height: int = 32) -> SafeString:
    """A small line of the counts over the last day (no axes, no script)."""
    if len(values) < 2:
        values = [values[0] if values else 0] * 2
    peak = max(max(values), 1)
    step = (width - 4) / (len(values) - 1)
    points = " ".join(
        f"{2 + i * step:.1f},{height - 2 - (height - 4) * v / peak:.1f}"
        for i, v in enumerate(values)
    )
    return format_html(
        '<svg class="pm-spark" width="{}" height="{}" viewBox="0 0 {} {}" role="img" '
        'aria-label="{}"><polyline points="{}" fill="none" stroke="currentColor" '
        'stroke-width="1.5"/></svg>',
        width, height, width, height, f"{title}: last {TREND_HOURS} hours, peak {peak}", points,
    )  # fmt: skip
