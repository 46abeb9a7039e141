"""Atomic, no-clobber file output.

A crash, a refusal or Ctrl-C must never leave a partial or stale file where a pipeline will look
for a result. Everything is written to a temporary sibling first, flushed to disk (fsync), and
renamed into place; the folder is then synced too, so after a power loss a result is either whole
or absent. Outputs get the ordinary permissions of a new file (0666 less the umask, e.g. 0644).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import stat
from pathlib import Path
from typing import Any, Iterator, Mapping

from sdpm_cli.errors import UsageError

TEMP_SUFFIX = ".part"  # temporaries are ".<name>.<random>.part<ext>" beside their destination


def _suffixes(path: Path) -> str:
    # keep ".nii.gz" whole so writers that pick a format from the name still work
    return "".join(path.suffixes[-2:]) if path.name.endswith(".nii.gz") else path.suffix


def temp_glob(dest: Path) -> str:
    """The glob that matches the temporaries `atomic_path` makes for `dest` (to clean up after a kill)."""
    return f".{dest.name}.*{TEMP_SUFFIX}{_suffixes(dest)}"


def _nearest_existing(folder: Path) -> Path:
    while not os.path.lexists(folder) and folder != folder.parent:
        folder = folder.parent
    return folder


def check_folder_writable(dest: str | os.PathLike) -> Path:
    """Refuse early when `dest` could not be created: its folder (or the nearest one that exists) is
    not a folder or not writable. Probed by creating and removing a file, so it also holds for root,
    read-only mounts and ACLs, where permission bits alone would mislead."""
    dest = Path(dest)
    anc = _nearest_existing(dest.absolute().parent)
    if not anc.is_dir():
        raise UsageError(f"cannot write {dest}: {anc} is not a folder")
    try:
        fd, probe = _create_temp(anc / ".sdpm-write-check")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise UsageError(f"cannot write {dest}: folder {anc} is not writable ({exc.strerror})") from None
    return dest


def check_writable(dest: str | os.PathLike, force: bool) -> Path:
    """Refuse early (before any work) when an output exists and --force was not given, or when its
    folder cannot take a new file."""
    dest = Path(dest)
    if dest.exists() and not force:
        raise UsageError(f"output exists: {dest} (use --force to overwrite)")
    if dest.exists() and dest.is_dir():
        raise UsageError(f"output is a directory: {dest}")
    check_folder_writable(dest)
    return dest


def same_file_key(path: str | os.PathLike) -> str:
    """One key per file on disk: relative paths, `..` and symlinks (also of folders) resolved."""
    return os.path.normcase(str(Path(path).expanduser().resolve()))


def check_distinct(paths: Mapping[str, str | os.PathLike]) -> None:
    """Refuse two outputs (named by their option) that are one file: one would silently replace the other."""
    seen: dict[str, str] = {}
    for name, p in paths.items():
        key = same_file_key(p)
        if key in seen:
            raise UsageError(f"{seen[key]} and {name} are the same file ({p}): give each output its own path")
        seen[key] = name


def _create_temp(stem: Path, suffix: str = "") -> tuple[int, Path]:
    """Create a new, empty file `stem.<random><suffix>` exclusively, with mode 0666 less the umask
    (mkstemp would force 0600 on every output)."""
    for _ in range(100):
        path = Path(f"{stem}.{secrets.token_hex(4)}{suffix}")
        try:
            return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666), path
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name beside {stem}")


def _fsync_path(path: Path, directory: bool = False) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0))
    except OSError:
        if directory:  # some platforms (Windows) cannot open a folder: nothing to sync there
            return
        raise
    try:
        os.fsync(fd)
    except OSError:
        if not directory:  # a file that cannot reach the disk is a failed write
            raise
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike, force: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside `dest`; rename it onto `dest` only if the block succeeds."""
    dest = check_writable(dest, force)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_path = _create_temp(dest.parent / f".{dest.name}", TEMP_SUFFIX + _suffixes(dest))
    mode = stat.S_IMODE(os.fstat(fd).st_mode)  # what the umask made of 0666
    os.close(fd)
    try:
        yield tmp_path
        if stat.S_IMODE(os.stat(tmp_path).st_mode) != mode:  # a writer replaced the file with its own mode
            os.chmod(tmp_path, mode)
        _fsync_path(tmp_path)
        os.replace(tmp_path, dest)
        _fsync_path(dest.parent, directory=True)
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
