"""The one contact-sheet function: gallery layout, table layout with titles, empty cells."""
from __future__ import annotations

import numpy as np

from blender_relight.contact_sheet import contact_sheet


def test_gallery_fits_each_image_in_its_cell() -> None:
    red = np.zeros((40, 80, 3), np.uint8)
    red[..., 0] = 255
    sheet = contact_sheet([red, red, red], labels=["a", "b", "c"], columns=2, thumb=32)
    assert sheet.shape == (2 * (32 + 22), 2 * 32, 3)
    assert tuple(sheet[16, 16]) == (255, 0, 0)          # wide image centred in cell (0, 0)
    assert tuple(sheet[2, 16]) == (24, 24, 24)          # letterbox above it stays background
    assert tuple(sheet[54 + 16, 48]) == (24, 24, 24)    # cell (1, 1) is past the last image


def test_table_has_title_bands_and_empty_cells() -> None:
    green = np.zeros((32, 32, 3), np.uint8)
    green[..., 1] = 200
    sheet = contact_sheet([green, None, green, green], columns=2, thumb=32, column_titles=["input", "a-long-name"],
                          row_titles=["#1", "#2"])
    assert sheet.shape == (36 + 2 * 32, 70 + 2 * 32, 3)
    assert tuple(sheet[36 + 16, 70 + 16]) == (0, 200, 0)
    assert tuple(sheet[36 + 16, 70 + 32 + 16]) == (24, 24, 24)   # None: an empty cell
    assert tuple(sheet[36 + 32 + 16, 70 + 32 + 16]) == (0, 200, 0)
    assert sheet[:36].max() > 24 and sheet[36:, :70].max() > 24  # titles were drawn
