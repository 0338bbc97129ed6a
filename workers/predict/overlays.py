"""What a person looks at: each category's pixels in its colour over the radiograph (a legend where there are
several), and the names of the mask files."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from shared.layout import case_id

# One colour per category, the first the single-category overlay's red.
OVERLAY_COLOURS = np.array(
    [[255, 40, 40], [40, 200, 255], [255, 200, 0], [60, 220, 60], [220, 60, 220], [255, 130, 0]], dtype=np.float32
)
OVERLAY_ALPHA = 0.45


def overlay(pixels: np.ndarray, labels: np.ndarray, names: list[str]) -> Image.Image:
    """The picture with each category's pixels in its colour; a legend in the corner where there are several."""
    rgb = np.repeat(pixels[:, :, None].astype(np.float32), 3, axis=2)
    for index in range(len(names)):
        mask = labels == index + 1
        colour = OVERLAY_COLOURS[index % len(OVERLAY_COLOURS)]
        rgb[mask] = (1 - OVERLAY_ALPHA) * rgb[mask] + OVERLAY_ALPHA * colour
    picture = Image.fromarray(rgb.astype(np.uint8))
    if len(names) > 1:
        _draw_legend(picture, names)
    return picture


def _draw_legend(picture: Image.Image, names: list[str]) -> None:
    draw = ImageDraw.Draw(picture)
    font = ImageFont.load_default(size=max(10, min(picture.size) // 40))
    line = int(font.size * 1.4)
    width = max(int(draw.textlength(name, font=font)) for name in names) + line + 12
    draw.rectangle([4, 4, 4 + width, 8 + line * len(names)], fill=(0, 0, 0))
    for index, name in enumerate(names):
        top = 6 + index * line
        colour = tuple(int(v) for v in OVERLAY_COLOURS[index % len(OVERLAY_COLOURS)])
        draw.rectangle([8, top + 2, 8 + line - 6, top + line - 4], fill=colour)
        draw.text((8 + line, top), name, fill=(255, 255, 255), font=font)


def hex_colours(count: int) -> list[str]:
    """The first `count` categories' colours as #rrggbb, as an annotation tool's labels take them."""
    rows = [OVERLAY_COLOURS[index % len(OVERLAY_COLOURS)] for index in range(count)]
    return ["#" + "".join(f"{int(value):02x}" for value in row) for row in rows]


def mask_files(stem: str, names: list[str]) -> dict[str, str]:
    """category -> its mask's file name: `<stem>_mask.png` for one category, `<stem>_mask_<name>.png` each for
    several."""
    if len(names) == 1:
        return {names[0]: f"{stem}_mask.png"}
    return {name: f"{stem}_mask_{case_id(name)}.png" for name in names}
