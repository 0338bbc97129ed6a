"""Drop the high-frequency scans of a progressive JPEG that will be decoded at 1/8 scale.

At 1/8 scale libjpeg's 1x1 IDCT reads only each block's DC coefficient; a progressive JPEG stores its
coefficients in separate scans, so most of its bytes (the AC scans) are decoded for nothing. libjpeg
does look at the lowest AC band when it is missing (it then "smooths" blocks from their neighbours),
so that band's first scan is kept too: with it, the 1/8-scale picture is the same, pixel for pixel,
as the full file's (tests/workers check this on every large picture of the mini set). FracAtlas's
2304x2880 radiographs are progressive, and this is most of the ingest's speed on them.
"""

from __future__ import annotations

import re

NEXT_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7]")  # 0xFF00 is stuffing, 0xFFD0-D7 are restart markers
SOF_PROGRESSIVE = 0xC2
SOF_OTHER = {0xC0, 0xC1, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
SOS, EOI = 0xDA, 0xD9
STANDALONE = {0x01, *range(0xD0, 0xD8)}


def _needed_at_one_eighth(spectral_start: int, successive_high: int) -> bool:
    """DC scans, and the first (not refining) scan of the band that starts at coefficient 1."""
    return spectral_start == 0 or (spectral_start == 1 and successive_high == 0)


def low_frequency_scans(data: bytes) -> bytes | None:
    """`data` without the scans a 1/8-scale decode does not need; None unless a complete progressive JPEG."""
    if data[:2] != b"\xff\xd8":
        return None
    kept = [data[:2]]
    position, progressive = 2, False
    while position + 2 <= len(data):
        if data[position] != 0xFF:
            return None
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        if marker == EOI:
            kept.append(b"\xff\xd9")
            return b"".join(kept) if progressive else None
        if marker in STANDALONE:
            kept.append(data[position : position + 2])
            position += 2
            continue
        if marker in SOF_OTHER:
            return None
        progressive |= marker == SOF_PROGRESSIVE
        header_end = position + 2 + int.from_bytes(data[position + 2 : position + 4], "big")
        if marker != SOS:
            kept.append(data[position:header_end])
            position = header_end
            continue
        if not progressive:
            return None
        components = data[position + 4]
        spectral_start = data[position + 5 + 2 * components]
        successive_high = data[position + 7 + 2 * components] >> 4
        found = NEXT_MARKER.search(data, header_end)
        if found is None:
            return None  # truncated inside a scan: the ordinary decoder deals with it
        if _needed_at_one_eighth(spectral_start, successive_high):
            kept.append(data[position : found.start()])
        position = found.start()
    return None
