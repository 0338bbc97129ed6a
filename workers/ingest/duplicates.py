"""Identical and near-identical pictures of a release, found from their decoded pixels.

The release holds some radiographs twice under two ids, a few of them once in Fractured/ and once in
Non_fractured/. Each picture gets two hashes of its upright working-size pixels: an exact one (any
difference at all tells two pictures apart) and a perceptual one (a 16x16 difference hash: 256 bits, one
per pair of neighbouring cells of a 17x16 thumbnail, set where the right cell is brighter). Two pictures
whose perceptual hashes differ in at most NEAR_BITS bits are near-identical (the same radiograph
re-encoded, resized or brightened a little); docs/ingest.md gives the distances measured on the release.
Pictures joined by either relation, directly or through others, form one group.
"""

from __future__ import annotations

import hashlib

import numpy as np
from PIL import Image

HASH_SIDE = 16
NEAR_BITS = 12  # of 256: re-encoded copies differ in a handful, distinct radiographs in 40 or more
BLOCK = 512  # rows of the distance matrix compared at once


def exact_hash(pixels: np.ndarray) -> str:
    shape = f"{pixels.shape[0]}x{pixels.shape[1]}:".encode()
    return hashlib.blake2b(shape + np.ascontiguousarray(pixels).tobytes(), digest_size=16).hexdigest()


def perceptual_hash(pixels: np.ndarray) -> str:
    """The 256-bit difference hash of a (rows, columns) uint8 picture, as 64 hex digits."""
    thumbnail = np.asarray(
        Image.fromarray(pixels).resize((HASH_SIDE + 1, HASH_SIDE), Image.Resampling.BOX), dtype=np.int16
    )
    bits = (thumbnail[:, 1:] > thumbnail[:, :-1]).ravel()
    return np.packbits(bits).tobytes().hex()


def hamming_pairs(hashes: list[str], max_bits: int) -> list[tuple[int, int, int]]:
    """(i, j, distance) for every pair i < j whose perceptual hashes differ in at most `max_bits` bits."""
    if not hashes:
        return []
    packed = np.frombuffer(bytes.fromhex("".join(hashes)), dtype=np.uint8).reshape(len(hashes), -1)
    pairs = []
    for start in range(0, len(hashes), BLOCK):
        block = packed[start : start + BLOCK]
        distances = np.bitwise_count(block[:, None, :] ^ packed[None, :, :]).sum(axis=2)
        for row, column in zip(*np.nonzero(distances <= max_bits), strict=True):
            i = start + int(row)
            if i < column:
                pairs.append((i, int(column), int(distances[row, column])))
    return pairs


def group_pictures(exact: list[str], perceptual: list[str], max_bits: int = NEAR_BITS) -> list[int]:
    """A group number for each picture: pictures that are identical or near-identical (directly or through
    another) share one; the number is the index of the group's first picture."""
    parent = list(range(len(exact)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def join(i: int, j: int) -> None:
        a, b = root(i), root(j)
        if a != b:
            parent[max(a, b)] = min(a, b)

    first: dict[str, int] = {}
    for index, digest in enumerate(exact):
        join(first.setdefault(digest, index), index)
    for i, j, _ in hamming_pairs(perceptual, max_bits):
        join(i, j)
    return [root(i) for i in range(len(exact))]


def seen_before(
    exact: list[str],
    perceptual: list[str],
    known_exact: set[str],
    known_perceptual: list[str],
    max_bits: int = NEAR_BITS,
) -> list[bool]:
    """For each picture (its two hashes): whether it is identical or near-identical to a known one (another
    release's pictures: what a model was trained on, when an external cohort is scored)."""
    if not known_perceptual:
        return [digest in known_exact for digest in exact]
    return [
        digest in known_exact or match is not None
        for digest, match in zip(exact, known_matches(perceptual, known_perceptual, max_bits), strict=True)
    ]


def known_matches(perceptual: list[str], known_perceptual: list[str], max_bits: int = NEAR_BITS) -> list[int | None]:
    """For each perceptual hash: the index of the nearest known one within `max_bits`, else None."""
    if not known_perceptual:
        return [None] * len(perceptual)
    known = np.frombuffer(bytes.fromhex("".join(known_perceptual)), dtype=np.uint8).reshape(len(known_perceptual), -1)
    matches: list[int | None] = []
    for near in perceptual:
        distances = np.bitwise_count(known ^ np.frombuffer(bytes.fromhex(near), dtype=np.uint8)).sum(axis=1)
        nearest = int(distances.argmin())
        matches.append(nearest if distances[nearest] <= max_bits else None)
    return matches
