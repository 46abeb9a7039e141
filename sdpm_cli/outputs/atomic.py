"""Atomic, no-clobber file output.

A crash, a refusal or Ctrl-C must never leave a partial or stale file where a pipeline will look
for a result. Everything is written to a temporary sibling first and renamed into place.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

from sdpm_cli.errors import UsageError


def _suffixes(path: Path) -> str:
    # keep ".nii.gz" whole so writers that pick a format from the name still work
    return "".join(path.suffixes[-2:]) if path.name.endswith(".nii.gz") else path.suffix


def check_writable(dest: str | os.PathLike, force: bool) -> Path:
    """Refuse early (before any work) when an output exists and --force was not given."""
    dest = Path(dest)
    if dest.exists() and not force:
        raise UsageError(f"output exists: {dest} (use --force to overwrite)")
    if dest.exists() and dest.is_dir():
        raise UsageError(f"output is a directory: {dest}")
    return dest


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike, force: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside `dest`; rename it onto `dest` only if the block succeeds."""
    dest = check_writable(dest, force)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part" + _suffixes(dest), dir=dest.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, dest)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_text(dest: str | os.PathLike, text: str, force: bool = False) -> Path:
    with atomic_path(dest, force) as tmp:
        tmp.write_text(text)
    return Path(dest)


def write_json(dest: str | os.PathLike, obj: Any, force: bool = False) -> Path:
    return write_text(dest, json.dumps(obj, indent=2, sort_keys=False) + "\n", force)


def write_image(image: "SimpleITK.Image", dest: str | os.PathLike, force: bool = False) -> Path:  # noqa: F821
    """Write a SimpleITK image (NIfTI, NRRD...) atomically, compressed where the format allows."""
    import SimpleITK as sitk

    with atomic_path(dest, force) as tmp:
        sitk.WriteImage(image, str(tmp), useCompression=True)
    return Path(dest)
