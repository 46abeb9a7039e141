"""Study inputs that are files rather than DICOM folders: research volumes and zipped DICOM folders.

Research data come as NIfTI, NRRD or MetaImage (SimpleITK reads all three). SimpleITK hides two
NIfTI faults that would give a wrong answer: a `.nii.gz` cut short is read with its missing tail as
zeros (0 HU slices that pass the HU check), and a sheared affine is refused as an unreadable file.
Both are found here from the header (nibabel) before the pixels are read. A `.zip` of a DICOM folder
is unpacked, with bounds against path traversal and zip bombs, into a private temporary folder that
lives as long as the process (the mask, SEG and report refer to its files).
"""

from __future__ import annotations

import atexit
import gzip
import math
import os
import shutil
import struct
import tempfile
import zipfile
import zlib
from pathlib import Path
from typing import Union

import numpy as np

from sdpm_cli.errors import InputRejected

PathLike = Union[str, Path]

# Single-file volume formats a study may be given as (longest suffix first: ".nii.gz" before ".nii").
VOLUME_FORMATS = {".nii.gz": "NIfTI", ".nii": "NIfTI", ".nrrd": "NRRD", ".nhdr": "NRRD", ".mha": "MetaImage",
                  ".mhd": "MetaImage"}
VOLUME_SUFFIXES = tuple(VOLUME_FORMATS)


def volume_suffix(path: PathLike) -> str:
    """The volume-format suffix of a file name ('' when it is not one)."""
    name = str(path).lower()
    return next((s for s in VOLUME_SUFFIXES if name.endswith(s)), "")


def is_volume_file(path: PathLike) -> bool:
    return bool(volume_suffix(path))


def is_zip(path: PathLike) -> bool:
    return str(path).lower().endswith(".zip")


def is_study_file(path: PathLike) -> bool:
    """A file that is a whole study by itself (a volume or a zipped DICOM folder)."""
    return is_volume_file(path) or is_zip(path)


def study_name(path: PathLike) -> str:
    """A study's name without its format suffix (batch output folders are named by it)."""
    name = Path(path).name
    suffix = volume_suffix(name) or (".zip" if is_zip(name) else "")
    return name[: len(name) - len(suffix)] if suffix else name


def format_name(path: PathLike) -> str:
    return VOLUME_FORMATS.get(volume_suffix(path), "volume")


# ------------------------------------------------------------------------------------ NIfTI checks
def nonfinite_text(label: str, bad: np.ndarray) -> str:
    """The refusal for NaN / infinite voxels; `bad` is indexed like the image (i, j, k)."""
    i, j, k = (int(v[0]) for v in np.nonzero(bad))
    return (f"{label}: {int(bad.sum())} voxel(s) are NaN or infinite ({100.0 * bad.mean():.2g}% of the volume, "
            f"first at voxel {i},{j},{k}); replace them (e.g. -1000 HU outside the head) and retry")


def _nifti_header(path: Path):
    """(bytes the file must hold when complete, the affine SimpleITK will use, sform_code, nibabel image)."""
    import nibabel as nib

    try:
        img = nib.load(str(path))
    except Exception as exc:  # noqa: BLE001 - nibabel's reasons are long; ours is one line
        raise InputRejected(f"cannot read NIfTI {path.name}: not a valid NIfTI header ({type(exc).__name__})") from None
    hdr = img.header
    n = int(np.prod(hdr.get_data_shape(), dtype=np.int64))
    nbytes = int(hdr.get_data_dtype().itemsize) * n
    offset = int(hdr.get_data_offset())
    sform_code = int(hdr.get("sform_code", 0))
    affine = hdr.get_sform() if sform_code > 0 else hdr.get_qform()
    return offset + nbytes, np.asarray(affine, float), sform_code, img


def _gzip_size(path: Path, need: int) -> int:
    """Uncompressed size of a gzip file; stops counting once `need` bytes were seen."""
    with open(path, "rb") as f:  # the trailer holds the size mod 2**32: a cheap check first
        f.seek(0, os.SEEK_END)
        if f.tell() >= 18:
            f.seek(-4, os.SEEK_END)
            if struct.unpack("<I", f.read(4))[0] == need % 2**32:
                return need
    total = 0
    try:
        with gzip.open(path, "rb") as g:
            while total < need:
                chunk = g.read(1 << 22)
                if not chunk:
                    break
                total += len(chunk)
    except (EOFError, OSError, zlib.error):
        pass
    return total


def shear_deg(affine: np.ndarray) -> float:
    """Largest deviation from 90 degrees between the axes of a voxel-to-world matrix (0 = no shear)."""
    A = np.asarray(affine, float)[:3, :3]
    cols = [A[:, k] / (np.linalg.norm(A[:, k]) or 1.0) for k in range(3)]
    worst = 0.0
    for a, b in ((0, 1), (0, 2), (1, 2)):
        ang = math.degrees(math.acos(max(-1.0, min(1.0, float(cols[a] @ cols[b])))))
        worst = max(worst, abs(90.0 - ang))
    return worst


def check_nifti(path: Path, max_shear_deg: float) -> None:
    """Refuse a NIfTI file that is cut short, sheared, or holds NaN / infinite voxels (SimpleITK reads
    those as 0 HU)."""
    need, affine, sform_code, img = _nifti_header(path)
    have = _gzip_size(path, need) if str(path).lower().endswith(".gz") else path.stat().st_size
    if have < need:
        raise InputRejected(f"NIfTI {path.name} is truncated: it holds {100.0 * have / need:.0f}% of the "
                            f"{need / 1e6:.1f} MB its header describes (an interrupted copy or download?)")
    if not np.all(np.isfinite(affine[:3, :4])) or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise InputRejected(f"NIfTI {path.name}: the voxel-to-world matrix is not finite or has zero size")
    s = shear_deg(affine)
    if s > max_shear_deg:
        which = "sform" if sform_code > 0 else "qform"
        raise InputRejected(f"NIfTI {path.name}: sheared affine ({which} axes {s:.1f} degrees from orthogonal); "
                            "the voxels are not on a rectangular grid - resample it to an orthogonal grid first")
    if img.header.get_data_dtype().kind in "fc" or not np.isfinite(img.dataobj.slope) or not np.isfinite(img.dataobj.inter):
        data = np.asanyarray(img.dataobj)
        bad = ~np.isfinite(data)
        if bad.ndim == 3 and bad.any():
            raise InputRejected(nonfinite_text(f"NIfTI {path.name}", bad))


# ------------------------------------------------------------------------------------ zipped folders
_TEMP_DIRS: list[str] = []


def _cleanup() -> None:
    for d in _TEMP_DIRS:
        shutil.rmtree(d, ignore_errors=True)


atexit.register(_cleanup)


def unzip_study(path: Path, max_bytes: int, max_members: int) -> Path:
    """Unpack a zipped DICOM folder into a private temporary folder (removed when the process exits)."""
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise InputRejected(f"{path.name}: not a readable zip file ({exc})") from None
    with zf:
        members = [m for m in zf.infolist() if not m.is_dir()]
        if len(members) > max_members:
            raise InputRejected(f"{path.name}: {len(members)} files in the zip (at most {max_members} are read)")
        total = sum(m.file_size for m in members)
        if total > max_bytes:
            raise InputRejected(f"{path.name}: unpacks to {total / 2**30:.1f} GiB (at most {max_bytes / 2**30:.0f} GiB)")
        if any(m.flag_bits & 0x1 for m in members):
            raise InputRejected(f"{path.name}: the zip is encrypted")
        root = Path(tempfile.mkdtemp(prefix="sdpm-zip-"))
        _TEMP_DIRS.append(str(root))
        budget = max_bytes  # the declared sizes may lie: count what is actually unpacked
        for k, m in enumerate(members):
            # never trust member names: each file gets a fresh safe name, its folder only as a hint
            parts = [p for p in Path(m.filename.replace("\\", "/")).parts if p not in ("", ".", "..", "/")]
            name = "_".join(parts)[-120:] or f"member{k}"
            target = root / f"{k:06d}_{name.replace(os.sep, '_')}"
            try:
                with zf.open(m) as src, open(target, "wb") as dst:
                    while chunk := src.read(1 << 20):
                        budget -= len(chunk)
                        if budget < 0:
                            raise InputRejected(f"{path.name}: unpacks to more than {max_bytes / 2**30:.0f} GiB")
                        dst.write(chunk)
            except (zipfile.BadZipFile, OSError, EOFError) as exc:
                raise InputRejected(f"{path.name}: cannot unpack {m.filename!r} ({type(exc).__name__}): truncated or corrupt zip") from None
    return root
