"""Report output: markdown tables, CSV and per-frame plots, all written atomically.

Contact sheets come from blender_relight.contact_sheet (one function for every sheet in the project).

Why OpenCV drawing for plots: it is already a dependency, draws deterministic PNGs fast and needs no display backend.
"""
from __future__ import annotations

import csv
import io
import math
import os
from typing import Sequence

import cv2
import numpy as np

from blender_relight.io_utils import write_bytes_atomic

#: (key, column header, format) of the summary table, in order.
COLUMNS: list[tuple[str, str, str]] = [
    ("light_err_dpr", "light err (DPR est.) ↓", "{:.3f}"),
    ("slope_x", "x slope (DPR est.) →1", "{:.2f}"),
    ("slope_y", "y slope (DPR est.) →1", "{:.2f}"),
    ("slope_z", "z slope (DPR est.) →1", "{:.2f}"),
    ("light_err_geo", "light err (geometric, gray) ↓", "{:.3f}"),
    ("light_err_geo_rgb", "light err (geometric, RGB) ↓", "{:.3f}"),
    ("instability_dpr", "instability (DPR est.) ↓", "{:.4f}"),
    ("instability_geo", "instability (geometric) ↓", "{:.4f}"),
    ("identity", "identity ↑", "{:.4f}"),
    ("warp_err", "warping err ↓", "{:.4f}"),
    ("fps_relight", "relight fps", "{:.2f}"),
    ("fps_end_to_end", "end-to-end fps", "{:.2f}"),
    ("peak_mem_mib", "peak RSS MiB", "{:.0f}"),
    ("mem_growth_mib", "Δ RSS MiB", "{:.0f}"),
    ("frames", "frames", "{:d}"),
]


def _fmt(value: object, fmt: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    try:
        return fmt.format(int(value) if fmt == "{:d}" else value)
    except (ValueError, TypeError):
        return str(value)


def markdown_table(rows: Sequence[dict], lead: Sequence[str] = ("system",)) -> str:
    """Rows (dicts with the ``lead`` keys and keys of :data:`COLUMNS`) as a GitHub markdown table."""
    head = list(lead) + [h for _, h, _ in COLUMNS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [str(r.get(k, "")) for k in lead] + [_fmt(r.get(k), f) for k, _, f in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_csv(path: str | os.PathLike, rows: Sequence[dict]) -> None:
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys)
    writer.writeheader()
    for r in rows:
        writer.writerow({k: r.get(k, "") for k in keys})
    write_bytes_atomic(path, buf.getvalue().encode())


def write_png(path: str | os.PathLike, image_rgb8: np.ndarray) -> None:
    ok, data = cv2.imencode(".png", cv2.cvtColor(image_rgb8, cv2.COLOR_RGB2BGR))
    if not ok:
        raise OSError(f"PNG encoding failed for {path}")
    write_bytes_atomic(path, data.tobytes())


_PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
            (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]


def line_plot(series: dict[str, tuple[np.ndarray, np.ndarray]], title: str, xlabel: str, ylabel: str,
              size: tuple[int, int] = (1000, 360)) -> np.ndarray:
    """A line plot (RGB uint8) of named (x, y) series, with axes, ticks and a legend, drawn with OpenCV."""
    w, h = size
    img = np.full((h, w, 3), 255, np.uint8)
    left, right, top, bottom = 70, 250, 30, 40
    xs = [np.asarray(x, float) for x, _ in series.values() if len(x)]
    ys = [np.asarray(y, float)[np.isfinite(y)] for _, y in series.values() if len(y)]
    ys = [y for y in ys if len(y)]
    font = cv2.FONT_HERSHEY_SIMPLEX
    cv2.putText(img, f"{title}   [y: {ylabel}]", (left, 20), font, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    if not xs or not ys:
        cv2.putText(img, "no data", (w // 2 - 30, h // 2), font, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
        return img
    x0, x1 = min(x.min() for x in xs), max(x.max() for x in xs)
    y0, y1 = min(y.min() for y in ys), max(y.max() for y in ys)
    if x1 == x0:
        x1 = x0 + 1
    if y1 == y0:
        y0, y1 = y0 - 0.5, y1 + 0.5
    pad = 0.05 * (y1 - y0)
    y0, y1 = y0 - pad, y1 + pad
    px = lambda x: left + (np.asarray(x) - x0) / (x1 - x0) * (w - left - right)  # noqa: E731
    py = lambda y: h - bottom - (np.asarray(y) - y0) / (y1 - y0) * (h - top - bottom)  # noqa: E731
    cv2.rectangle(img, (left, top), (w - right, h - bottom), (0, 0, 0), 1)
    for i in range(5):
        yv = y0 + (y1 - y0) * i / 4
        yy = int(py(yv))
        cv2.line(img, (left - 4, yy), (w - right, yy), (225, 225, 225), 1)
        cv2.putText(img, f"{yv:.3g}", (5, yy + 4), font, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
        xv = x0 + (x1 - x0) * i / 4
        cv2.putText(img, f"{xv:.0f}", (int(px(xv)) - 10, h - bottom + 15), font, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, xlabel, (w // 2 - 40, h - 8), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    for i, (name, (x, y)) in enumerate(series.items()):
        color = _PALETTE[i % len(_PALETTE)]
        x, y = np.asarray(x, float), np.asarray(y, float)
        ok = np.isfinite(y)
        pts = np.stack([px(x[ok]), py(y[ok])], axis=1).astype(np.int32)
        if len(pts) > 1:
            cv2.polylines(img, [pts], False, color, 2, cv2.LINE_AA)
        for p in pts:
            cv2.circle(img, tuple(int(v) for v in p), 2, color, -1, cv2.LINE_AA)
        ly = top + 12 + 18 * i
        cv2.line(img, (w - right + 8, ly - 4), (w - right + 28, ly - 4), color, 2)
        cv2.putText(img, name[:30], (w - right + 32, ly), font, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    return img


def stack_plots(plots: Sequence[np.ndarray]) -> np.ndarray:
    return np.concatenate(list(plots), axis=0)


def write_text(path: str | os.PathLike, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))

