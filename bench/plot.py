#!/usr/bin/env python3
"""Charts of the gateway's concurrency sweep, as self-contained SVG.

    bench/plot.py SWEEP.TSV OUTDIR [MACHINE]

Reads sweep.tsv (bench/run.sh gateway: one row per wrk run, columns round,
target, conns, req_per_s, p50_ms, p99_ms, ..., cpu_us_gateway, cpu_us_bare),
takes the median over the rounds of each (target, conns) and writes to
OUTDIR:

    throughput.svg  req/s against connections
    p99.svg         p99 latency (ms, log scale) against connections
    cpu.svg         gateway CPU us per request of each route, and the
                    reference's own, against connections

Connections are on a log scale. MACHINE names the machine in the titles
(default: "one N-core machine", N this machine's CPUs). Python 3 standard
library only; the SVG uses no external fonts, CSS or scripts.
"""
import csv
import math
import os
import statistics
import sys
from xml.sax.saxutils import escape

WIDTH, HEIGHT = 900, 520
LEFT, RIGHT, TOP, BOTTOM = 86, 270, 78, 64
FONT = 'font-family="DejaVu Sans, Helvetica, Arial, sans-serif"'

# Legend (two lines), colour, dash pattern and marker of each known target;
# any other target gets its name and the next of the spare colours.
STYLES = {
    "reference": (("reference", "civetweb, fixed body, one write"), "#555555", "6 4", "square"),
    "/people/pets?owner=bob": (("GET /people/pets?owner=bob", "gateway, 2 RPCs"), "#1f6fb4", "",
                               "circle"),
    "/people": (("GET /people", "gateway, 1 RPC"), "#d0461c", "", "triangle"),
}
SPARE_COLOURS = ["#2a9d3a", "#8e44ad", "#b8860b", "#17becf"]


def read_sweep(path):
    """The rows of sweep.tsv as dicts."""
    with open(path, newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def medians(rows, column):
    """{target: [(conns, median of column over the rounds)]}, conns ascending;
    "-" and empty values are left out (the lower middle of an even count,
    as bench/lib.sh's median)."""
    values = {}
    for row in rows:
        v = row.get(column, "-")
        if v in ("-", "", None):
            continue
        values.setdefault(row["target"], {}).setdefault(int(row["conns"]), []).append(float(v))
    return {t: sorted((c, statistics.median_low(vs)) for c, vs in by_c.items())
            for t, by_c in values.items()}


def rounds_in(rows):
    """How many rounds the sweep has."""
    return len({row["round"] for row in rows})


def nice_step(span, ticks=6):
    """A step of 1, 2 or 5 times a power of ten giving about `ticks` ticks."""
    raw = span / ticks if span > 0 else 1
    power = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 5, 10):
        if raw <= m * power:
            return m * power
    return 10 * power


def fmt(v):
    """A tick label: 12,000 / 250 / 2.5 / 0.05."""
    if v >= 1000:
        return f"{v:,.0f}"
    if v >= 10 or v == int(v):
        return f"{v:.0f}"
    return f"{v:.3g}"


def linear_ticks(top):
    """Ticks 0 .. at least top, and the axis top."""
    step = nice_step(top)
    n = max(1, math.ceil(top / step))
    return [i * step for i in range(n + 1)], n * step


def log_ticks(low, high):
    """Ticks at 1, 2 and 5 times the powers of ten from below low to above
    high, and the axis range."""
    lo = 10 ** math.floor(math.log10(low))
    hi = 10 ** math.ceil(math.log10(high))
    ticks, p = [], lo
    while p <= hi:
        ticks += [m * p for m in (1, 2, 5) if m * p <= hi]
        p *= 10
    return ticks, lo, hi


def marker(shape, x, y, colour):
    """One point's marker."""
    if shape == "square":
        return f'<rect x="{x - 4:.1f}" y="{y - 4:.1f}" width="8" height="8" fill="{colour}"/>'
    if shape == "triangle":
        return (f'<polygon points="{x:.1f},{y - 5.5:.1f} {x - 5:.1f},{y + 4:.1f} '
                f'{x + 5:.1f},{y + 4:.1f}" fill="{colour}"/>')
    return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4.5" fill="{colour}"/>'


def style(target, index):
    """Legend text, colour, dash and marker of a target."""
    if target in STYLES:
        return STYLES[target]
    return ((target, ""), SPARE_COLOURS[index % len(SPARE_COLOURS)], "", "circle")


def chart(path, title, subtitle, ylabel, series, log_y=False):
    """Writes one line chart: x = connections (log scale), one line with
    markers per series [(target or label, [(conns, value)])]."""
    pw, ph = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    xs = sorted({c for _, pts in series for c, _ in pts}) or [1]
    ys = [v for _, pts in series for _, v in pts] or [1]
    x_lo, x_hi = math.log10(xs[0]), math.log10(xs[-1])
    if x_hi == x_lo:
        x_lo, x_hi = x_lo - 0.5, x_hi + 0.5
    pad = (x_hi - x_lo) * 0.04

    def px(c):
        return LEFT + (math.log10(c) - x_lo + pad) / (x_hi - x_lo + 2 * pad) * pw

    if log_y:
        yticks, y_lo, y_hi = log_ticks(max(min(ys), 1e-3), max(ys))

        def py(v):
            return TOP + ph - (math.log10(max(v, y_lo)) - math.log10(y_lo)) / (
                math.log10(y_hi) - math.log10(y_lo)) * ph
    else:
        yticks, y_hi = linear_ticks(max(ys) * 1.05)

        def py(v):
            return TOP + ph - v / y_hi * ph

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
           f'viewBox="0 0 {WIDTH} {HEIGHT}" {FONT} font-size="13">',
           f'<rect width="{WIDTH}" height="{HEIGHT}" fill="#ffffff"/>',
           f'<text x="{LEFT}" y="30" font-size="18" font-weight="bold" fill="#111">{escape(title)}</text>',
           f'<text x="{LEFT}" y="52" font-size="13" fill="#444">{escape(subtitle)}</text>']
    for v in yticks:
        y = py(v)
        out.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{LEFT + pw}" y2="{y:.1f}" '
                   f'stroke="#e3e3e3" stroke-width="1"/>')
        out.append(f'<text x="{LEFT - 8}" y="{y + 4:.1f}" text-anchor="end" fill="#333">{fmt(v)}</text>')
    for c in xs:
        x = px(c)
        out.append(f'<line x1="{x:.1f}" y1="{TOP}" x2="{x:.1f}" y2="{TOP + ph}" '
                   f'stroke="#efefef" stroke-width="1"/>')
        out.append(f'<text x="{x:.1f}" y="{TOP + ph + 20}" text-anchor="middle" fill="#333">{c:,}</text>')
    out.append(f'<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="#888"/>')
    out.append(f'<text x="{LEFT + pw / 2:.1f}" y="{HEIGHT - 16}" text-anchor="middle" fill="#111">'
               f'concurrent keep-alive connections (log scale)</text>')
    out.append(f'<text transform="translate(22 {TOP + ph / 2:.1f}) rotate(-90)" '
               f'text-anchor="middle" fill="#111">{escape(ylabel)}</text>')
    for i, (target, pts) in enumerate(series):
        label, colour, dash, shape = style(target, i)
        points = " ".join(f"{px(c):.1f},{py(v):.1f}" for c, v in pts)
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        out.append(f'<polyline points="{points}" fill="none" stroke="{colour}" '
                   f'stroke-width="2.2"{dash_attr}/>')
        out += [marker(shape, px(c), py(v), colour) for c, v in pts]
        ly = TOP + 14 + i * 44
        lx = LEFT + pw + 18
        out.append(f'<line x1="{lx}" y1="{ly}" x2="{lx + 30}" y2="{ly}" stroke="{colour}" '
                   f'stroke-width="2.2"{dash_attr}/>')
        out.append(marker(shape, lx + 15, ly, colour))
        out.append(f'<text x="{lx + 38}" y="{ly + 4}" font-size="12" fill="#111">{escape(label[0])}</text>')
        out.append(f'<text x="{lx + 38}" y="{ly + 19}" font-size="11" fill="#555">{escape(label[1])}</text>')
    out.append("</svg>")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(out) + "\n")


def ordered(by_target):
    """The series in a fixed order: the reference, the known routes, the rest."""
    known = [t for t in STYLES if t in by_target]
    return [(t, by_target[t]) for t in known + sorted(set(by_target) - set(known))]


def main(argv):
    if len(argv) not in (3, 4):
        sys.exit("usage: bench/plot.py SWEEP.TSV OUTDIR [MACHINE]")
    rows = read_sweep(argv[1])
    if not rows:
        sys.exit(f"plot.py: no runs in {argv[1]}")
    out = argv[2]
    os.makedirs(out, exist_ok=True)
    machine = argv[3] if len(argv) == 4 else f"one {os.cpu_count()}-core machine"
    how = f"wrk closed loop, median of {rounds_in(rows)} rounds, {machine}, loopback"

    chart(os.path.join(out, "throughput.svg"), "Throughput against connections", how,
          "requests per second", ordered(medians(rows, "req_per_s")))
    chart(os.path.join(out, "p99.svg"), "p99 latency against connections", how,
          "p99 latency, ms (log scale)", ordered(medians(rows, "p99_ms")), log_y=True)
    gateway = medians(rows, "cpu_us_gateway")
    bare = medians(rows, "cpu_us_bare")
    cpu = {t: pts for t, pts in gateway.items() if t != "reference"}
    if "reference" in bare:
        cpu["reference"] = bare["reference"]
    chart(os.path.join(out, "cpu.svg"), "Gateway CPU per request (reference: its own)",
          how, "CPU µs per request (user + system)", ordered(cpu))
    for name in ("throughput.svg", "p99.svg", "cpu.svg"):
        print(os.path.join(out, name))


if __name__ == "__main__":
    main(sys.argv)
