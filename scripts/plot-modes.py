#!/usr/bin/env python3
"""Plot the training modes side by side as one SVG (no third-party modules): test accuracy against
the global step (left) and against wall time (right), one line per mode, from the evaluator's
curve.csv files (seconds,global_step,test_loss,test_accuracy). Every evaluation is a dot on its
line; an accuracy below the panels' range (the first evaluations) is drawn on the bottom edge.

    scripts/plot-modes.py [--title TEXT] OUT.svg async=run-async/curve.csv sync=run-sync/curve.csv ...
"""
import csv
import math
import sys
from xml.sax.saxutils import escape

COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"]
W, H = 1000, 430
PANEL_W, PANEL_H = 400, 300
MARGIN_L, MARGIN_T = 70, 50


def load(path):
    rows = []
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            rows.append((float(r["seconds"]), float(r["global_step"]), float(r["test_accuracy"])))
    return rows


def ticks(lo, hi, n=5):
    """Round tick values (1, 2, 2.5 or 5 times a power of ten apart) from lo to hi, about n of them."""
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    return [first + i * step for i in range(int((hi - first) / step + 1e-9) + 1)]


def panel(out, x0, series, xi, xlabel, ylo, yhi):
    xs = [r[xi] for _, rows in series for r in rows]
    xhi = max(xs) if xs else 1.0
    def px(x):
        return x0 + PANEL_W * (x / xhi if xhi else 0)
    def py(y):
        return MARGIN_T + PANEL_H * (1 - (y - ylo) / (yhi - ylo))
    out.append(f'<rect x="{x0}" y="{MARGIN_T}" width="{PANEL_W}" height="{PANEL_H}" '
               'fill="none" stroke="#333"/>')
    for t in ticks(ylo, yhi):
        out.append(f'<line x1="{x0}" x2="{x0 + PANEL_W}" y1="{py(t):.1f}" y2="{py(t):.1f}" '
                   'stroke="#ddd"/>')
        out.append(f'<text x="{x0 - 6}" y="{py(t) + 4:.1f}" font-size="11" '
                   f'text-anchor="end">{t:.3g}</text>')
    for t in ticks(0, xhi):
        out.append(f'<text x="{px(t):.1f}" y="{MARGIN_T + PANEL_H + 16}" font-size="11" '
                   f'text-anchor="middle">{t:.0f}</text>')
    out.append(f'<text x="{x0 + PANEL_W / 2}" y="{MARGIN_T + PANEL_H + 36}" font-size="13" '
               f'text-anchor="middle">{xlabel}</text>')
    for i, (name, rows) in enumerate(series):
        pts = " ".join(f"{px(r[xi]):.1f},{py(min(max(r[2], ylo), yhi)):.1f}" for r in rows)
        out.append(f'<polyline points="{pts}" fill="none" stroke="{COLORS[i % len(COLORS)]}" '
                   'stroke-width="2"/>')
        for r in rows:
            out.append(f'<circle cx="{px(r[xi]):.1f}" cy="{py(min(max(r[2], ylo), yhi)):.1f}" '
                       f'r="2.5" fill="{COLORS[i % len(COLORS)]}"/>')
    # 0.916: the figure the Fashion-MNIST benchmark lists for this network
    if ylo < 0.916 < yhi:
        out.append(f'<line x1="{x0}" x2="{x0 + PANEL_W}" y1="{py(0.916):.1f}" y2="{py(0.916):.1f}" '
                   'stroke="#888" stroke-dasharray="5,4"/>')
        out.append(f'<text x="{x0 + PANEL_W - 4}" y="{py(0.916) - 4:.1f}" font-size="10" '
                   'fill="#666" text-anchor="end">0.916</text>')


def main():
    args = sys.argv[1:]
    title = ("pscope: tutorial CNN on Fashion-MNIST, test accuracy by consistency mode "
             "(dashed: 0.916)")
    if len(args) >= 2 and args[0] == "--title":
        title = args[1]
        args = args[2:]
    if len(args) < 2:
        sys.exit(__doc__)
    series = []
    for arg in args[1:]:
        name, path = arg.rsplit("=", 1)  # a label may hold "=" (tau=2)
        series.append((name, load(path)))
    accs = [r[2] for _, rows in series for r in rows]
    ylo = max(0.0, min(accs) - 0.01) if accs else 0.0
    ylo = max(ylo, 0.80)
    yhi = min(1.0, max(accs) + 0.005) if accs else 1.0
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
           'font-family="sans-serif">', '<rect width="100%" height="100%" fill="white"/>',
           f'<text x="500" y="24" font-size="15" text-anchor="middle">{escape(title)}</text>']
    panel(out, MARGIN_L, series, 1, "global step", ylo, yhi)
    panel(out, MARGIN_L + PANEL_W + 90, series, 0, "wall time (s)", ylo, yhi)
    x = MARGIN_L
    for i, (name, rows) in enumerate(series):
        y = H - 14
        out.append(f'<line x1="{x}" x2="{x + 30}" y1="{y - 4}" y2="{y - 4}" '
                   f'stroke="{COLORS[i % len(COLORS)]}" stroke-width="3"/>')
        best = max((r[2] for r in rows), default=0)
        label = f"{name} (best {best:.4f})"
        out.append(f'<text x="{x + 36}" y="{y}" font-size="12">{escape(label)}</text>')
        x += 36 + 7 * len(label) + 30  # about 7 px a character at font-size 12
    out.append("</svg>")
    with open(args[0], "w") as f:
        f.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
