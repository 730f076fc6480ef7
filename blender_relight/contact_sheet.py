"""Contact sheets: a grid of labelled thumbnails a person can glance at (demo, export, evaluation, training).

One function for every sheet in the project: a gallery (a label under each thumbnail) or a table (column titles on
top, row titles on the left, empty cells where a system produced nothing).
"""
from __future__ import annotations

import os
from collections.abc import Sequence

import cv2
import numpy as np

_FONT = cv2.FONT_HERSHEY_SIMPLEX
_TEXT = (235, 235, 235)


def _wrap(name: str, width: int) -> list[str]:
    """Split a long title on '-' into lines of at most ``width`` characters (system names stay readable)."""
    lines = [""]
    for part in name.split("-"):
        piece = part if not lines[-1] else "-" + part
        if lines[-1] and len(lines[-1]) + len(piece) > width:
            lines.append(part)
        else:
            lines[-1] += piece
    return [line[:width] for line in lines]


def contact_sheet(images: Sequence[np.ndarray | None], labels: Sequence[str] | None = None, columns: int = 4,
                  thumb: int = 256, background: int = 24, column_titles: Sequence[str] | None = None,
                  row_titles: Sequence[str] | None = None) -> np.ndarray:
    """Tile RGB uint8 images (any sizes; each fitted into a ``thumb`` square) into one RGB uint8 sheet.

    Row-major order, ``columns`` per row; ``None`` leaves a cell empty. ``labels`` are drawn under each thumbnail,
    ``column_titles`` in a header band (two lines at most) and ``row_titles`` in a band on the left.
    """
    if not len(images):
        raise ValueError("contact_sheet needs at least one image")
    labels = list(labels) if labels is not None else [""] * len(images)
    label_h = 22 if any(labels) else 0
    head_h = 36 if column_titles else 0
    left_w = 70 if row_titles else 0
    rows = (len(images) + columns - 1) // columns
    cell_h = thumb + label_h
    sheet = np.full((head_h + rows * cell_h, left_w + columns * thumb, 3), background, np.uint8)
    for j, title in enumerate(column_titles or ()):
        for line_no, line in enumerate(_wrap(title, max(8, thumb // 6))[:2]):
            cv2.putText(sheet, line, (left_w + j * thumb + 4, 14 + 14 * line_no), _FONT, 0.33, _TEXT, 1, cv2.LINE_AA)
    for r, title in enumerate(row_titles or ()):
        cv2.putText(sheet, title[:10], (4, head_h + r * cell_h + thumb // 2), _FONT, 0.4, _TEXT, 1, cv2.LINE_AA)
    for i, (image, label) in enumerate(zip(images, labels)):
        r, c = divmod(i, columns)
        top, left = head_h + r * cell_h, left_w + c * thumb
        if label:
            cv2.putText(sheet, label[:40], (left + 4, top + thumb + 16), _FONT, 0.45, _TEXT, 1, cv2.LINE_AA)
        if image is None:
            continue
        image = np.asarray(image)
        if image.ndim == 2:
            image = np.repeat(image[..., None], 3, axis=2)
        scale = thumb / max(image.shape[:2])
        h, w = max(1, round(image.shape[0] * scale)), max(1, round(image.shape[1] * scale))
        small = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
        y0, x0 = top + (thumb - h) // 2, left + (thumb - w) // 2
        sheet[y0:y0 + h, x0:x0 + w] = small
    return sheet


def save_contact_sheet(path: str | os.PathLike, images: Sequence[np.ndarray | None],
                       labels: Sequence[str] | None = None, columns: int = 4, thumb: int = 256,
                       column_titles: Sequence[str] | None = None, row_titles: Sequence[str] | None = None) -> None:
    """Build a contact sheet and write it as PNG atomically."""
    from blender_relight.video import write_image

    write_image(path, contact_sheet(images, labels, columns, thumb, column_titles=column_titles,
                                    row_titles=row_titles))
