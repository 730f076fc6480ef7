"""Contact sheets: a grid of labelled thumbnails a person can glance at (demo, evaluation, training previews)."""
from __future__ import annotations

import os
from collections.abc import Sequence

import cv2
import numpy as np


def contact_sheet(images: Sequence[np.ndarray], labels: Sequence[str] | None = None, columns: int = 4,
                  thumb: int = 256, background: int = 24) -> np.ndarray:
    """Tile RGB uint8 images (any sizes; each fitted into a ``thumb`` square) into one RGB uint8 sheet.

    Labels are drawn under each thumbnail. Row-major order, ``columns`` per row.
    """
    if not images:
        raise ValueError("contact_sheet needs at least one image")
    labels = list(labels) if labels is not None else [""] * len(images)
    label_h = 22 if any(labels) else 0
    rows = (len(images) + columns - 1) // columns
    sheet = np.full((rows * (thumb + label_h), columns * thumb, 3), background, np.uint8)
    for i, (image, label) in enumerate(zip(images, labels)):
        image = np.asarray(image)
        if image.ndim == 2:
            image = np.repeat(image[..., None], 3, axis=2)
        scale = thumb / max(image.shape[:2])
        h, w = max(1, round(image.shape[0] * scale)), max(1, round(image.shape[1] * scale))
        small = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
        r, c = divmod(i, columns)
        y0 = r * (thumb + label_h) + (thumb - h) // 2
        x0 = c * thumb + (thumb - w) // 2
        sheet[y0:y0 + h, x0:x0 + w] = small
        if label:
            cv2.putText(sheet, label[:40], (c * thumb + 4, r * (thumb + label_h) + thumb + 16),
                        cv2.FONT_HERSHEY_SIMPLEX, 0.45, (235, 235, 235), 1, cv2.LINE_AA)
    return sheet


def save_contact_sheet(path: str | os.PathLike, images: Sequence[np.ndarray], labels: Sequence[str] | None = None,
                       columns: int = 4, thumb: int = 256) -> None:
    """Build a contact sheet and write it as PNG atomically."""
    from blender_relight.video import write_image

    write_image(path, contact_sheet(images, labels, columns, thumb))
