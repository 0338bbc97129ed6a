"""Untrusted files: read only when regular, written by replacing (never through a planted link)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from shared.errors import InputError
from workers.files import read_regular_file, replacing


def test_a_link_planted_at_the_target_is_replaced_not_written_through(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("untouched")
    target = tmp_path / "out.csv"
    target.symlink_to(victim)
    with replacing(target, text=True) as handle:
        handle.write("a,b\n")
    assert victim.read_text() == "untouched"
    assert not target.is_symlink() and target.read_text() == "a,b\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~_umask()


def test_a_failed_write_leaves_neither_the_file_nor_its_temporary(tmp_path: Path) -> None:
    target = tmp_path / "case.nii.gz"
    with pytest.raises(RuntimeError), replacing(target) as handle:
        handle.write(b"half")
        raise RuntimeError("the writer died")
    assert list(tmp_path.iterdir()) == []


def test_only_regular_files_are_read(tmp_path: Path) -> None:
    fifo = tmp_path / "picture.jpg"
    os.mkfifo(fifo)
    with pytest.raises(InputError, match="is not a regular file"):
        read_regular_file(fifo)  # returns at once: opened without blocking, refused by its type
    link = tmp_path / "link.jpg"
    link.symlink_to("/etc/hostname")
    with pytest.raises(InputError, match="cannot be read"):
        read_regular_file(link)
    assert read_regular_file(link, follow_links=True) == Path("/etc/hostname").read_bytes()


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current
