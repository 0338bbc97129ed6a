"""Keep only what a 1/8-scale decode of a progressive JPEG needs: its DC scans.

At 1/8 scale libjpeg's 1x1 IDCT reads only each block's DC coefficient; a progressive JPEG stores its
coefficients in separate scans, so most of its bytes (the AC scans) are decoded for nothing. Dropping them
is not enough on its own: a progressive decode whose AC coefficients are still unknown runs libjpeg-turbo's
block smoothing over every block, which estimates the missing AC terms from neighbouring DC values and,
while no AC scan at all has been seen, adjusts the DC values too. So each component gets one last scan of
our own that declares every AC coefficient known and zero (a few end-of-band runs that skip all its
blocks): smoothing is then off, the DC values are the file's own, and the grayscale 1/8-scale picture
the ingest asks for is the full file's, pixel for pixel (tests/workers check this on every large picture
of the mini set and on colour, odd-sized and restart-marked files; a subsampled file's colour planes are
decoded at a larger scale and would differ, but grayscale output never reads them). FracAtlas's 2304x2880
radiographs are progressive, and this is most of the ingest's speed on them (with smoothing off, the
decode of their DC scans takes under half the time).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

NEXT_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7]")  # 0xFF00 is stuffing, 0xFFD0-D7 are restart markers
SOF_PROGRESSIVE = 0xC2
SOF_OTHER = {0xC0, 0xC1, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
SOS, EOI = 0xDA, 0xD9
STANDALONE = {0x01, *range(0xD0, 0xD8)}
BLOCK = 8
LONGEST_EOB_RUN = 2**15 - 1  # an end-of-band run symbol with 14 extra bits
NO_RESTARTS = b"\xff\xdd\x00\x04\x00\x00"  # DRI 0: the closing scans carry no restart markers


@dataclass(frozen=True)
class Component:
    id: int
    horizontal: int  # sampling factors
    vertical: int


@dataclass(frozen=True)
class Frame:
    width: int
    height: int
    components: tuple[Component, ...]

    def blocks(self, component: Component) -> int:
        """The blocks of one component's non-interleaved scan (libjpeg's width_in_blocks x height_in_blocks)."""
        h_max = max(c.horizontal for c in self.components)
        v_max = max(c.vertical for c in self.components)
        columns = math.ceil(self.width * component.horizontal / (h_max * BLOCK))
        rows = math.ceil(self.height * component.vertical / (v_max * BLOCK))
        return columns * rows


def dc_scans(data: bytes) -> bytes | None:
    """`data` with only its DC scans, closed by empty AC scans; None unless a complete progressive JPEG."""
    if data[:2] != b"\xff\xd8":
        return None
    kept = [data[:2]]
    position, frame = 2, None
    while position + 2 <= len(data):
        if data[position] != 0xFF:
            return None
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        if marker == EOI:
            return b"".join([*kept, _empty_ac_scans(frame), b"\xff\xd9"]) if frame else None
        if marker in STANDALONE:
            kept.append(data[position : position + 2])
            position += 2
            continue
        if marker in SOF_OTHER:
            return None
        header_end = position + 2 + int.from_bytes(data[position + 2 : position + 4], "big")
        if position + 4 > len(data) or header_end > len(data):
            return None
        if marker == SOF_PROGRESSIVE:
            frame = _frame(data[position + 4 : header_end])
            if frame is None:
                return None
        if marker != SOS:
            kept.append(data[position:header_end])
            position = header_end
            continue
        if frame is None:
            return None
        components = data[position + 4]
        if position + 8 + 2 * components > header_end:
            return None
        spectral_start = data[position + 5 + 2 * components]
        found = NEXT_MARKER.search(data, header_end)
        if found is None:
            return None  # truncated inside a scan: the ordinary decoder deals with it
        if spectral_start == 0:  # a DC scan, first or refining
            kept.append(data[position : found.start()])
        position = found.start()
    return None


def _frame(body: bytes) -> Frame | None:
    """A start-of-frame segment's body: precision, height, width, then (id, sampling, table) per component."""
    if len(body) < 6 or len(body) < 6 + 3 * body[5]:
        return None
    height, width, count = int.from_bytes(body[1:3], "big"), int.from_bytes(body[3:5], "big"), body[5]
    if not height or not width:  # the height comes later in a DNL segment: rare, left to the decoder
        return None
    components = tuple(Component(body[6 + 3 * i], body[7 + 3 * i] >> 4, body[7 + 3 * i] & 0x0F) for i in range(count))
    return Frame(width, height, components)


def _empty_ac_scans(frame: Frame) -> bytes:
    """One first AC scan (coefficients 1-63, full precision) per component, every block an end of band."""
    runs = {component: _eob_runs(frame.blocks(component)) for component in frame.components}
    # Each run is coded as the symbol (r << 4) for a run of 2**r + (r extra bits); all codes 4 bits long
    # (at most 15 distinct r, and no code is all ones, as the standard asks).
    symbols = sorted({run.bit_length() - 1 for component_runs in runs.values() for run in component_runs})
    table = bytes([0x10]) + bytes([0, 0, 0, len(symbols), *[0] * 12]) + bytes(r << 4 for r in symbols)
    out = [NO_RESTARTS, b"\xff\xc4" + (2 + len(table)).to_bytes(2, "big") + table]
    for component, component_runs in runs.items():
        bits = []
        for run in component_runs:
            extra = run.bit_length() - 1
            bits.append(format(symbols.index(extra), "04b"))
            if extra:
                bits.append(format(run - (1 << extra), f"0{extra}b"))
        stream = "".join(bits)
        stream += "1" * (-len(stream) % 8)  # pad with one-bits, as the standard says
        entropy = int(stream, 2).to_bytes(len(stream) // 8, "big").replace(b"\xff", b"\xff\x00")
        # Ns=1, the component, tables DC 0 / AC 0, Ss=1, Se=63, Ah=0, Al=0.
        out.append(b"\xff\xda\x00\x08" + bytes([1, component.id, 0x00, 1, 63, 0x00]) + entropy)
    return b"".join(out)


def _eob_runs(blocks: int) -> list[int]:
    runs = [LONGEST_EOB_RUN] * (blocks // LONGEST_EOB_RUN)
    return runs + [blocks % LONGEST_EOB_RUN] if blocks % LONGEST_EOB_RUN else runs
