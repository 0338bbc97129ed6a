"""A contact sheet: the top pictures of a ranking side by side, each with its predicted masks over it and a
caption (its rank, name and doubts), for a person who would rather look than read a CSV."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from workers.files import replacing
from workers.predict.overlays import overlay

TILE = 256  # each picture's long side on the sheet
CAPTION = 34  # pixels under each picture for its two lines
COLUMNS = 4


def write_contact_sheet(path: Path, tiles: list[tuple[np.ndarray, np.ndarray, list[str]]], names: list[str]) -> None:
    """`tiles`: (picture, its label map, its caption's two lines) in rank order; `names`: the categories."""
    columns = min(COLUMNS, len(tiles))
    rows = math.ceil(len(tiles) / columns)
    sheet = Image.new("RGB", (columns * TILE, rows * (TILE + CAPTION)), (0, 0, 0))
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=12)
    for index, (pixels, labels, caption) in enumerate(tiles):
        picture = overlay(pixels, labels, names)
        picture.thumbnail((TILE, TILE))
        left, top = (index % columns) * TILE, (index // columns) * (TILE + CAPTION)
        sheet.paste(picture, (left + (TILE - picture.width) // 2, top + (TILE - picture.height) // 2))
        for line, text in enumerate(caption):
            draw.text((left + 4, top + TILE + 2 + 15 * line), text, fill=(255, 255, 255), font=font)
    with replacing(path) as handle:
        sheet.save(handle, format="PNG")
