"""A second, independent reader for the chosen series: dicom2nifti (MIT) converts exactly its files and
we compare the result with our ingest's image (size, spacing, origin, direction, voxels).

Why: the ingest sorts slices and builds the geometry itself (ingest.geometry, ingest.volume); a
reader written by other people with other conventions (NIfTI RAS, its own slice sort) that lands on
the same voxels at the same physical points is evidence that we read the series right. Only clean
series are compared: a tilt- or gap-corrected image is resampled and no longer the source grid.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Sequence

import numpy as np
import SimpleITK as sitk

from sdpm_cli.ingest.checks import padding_mask
from sdpm_cli.ingest.rules import IngestRules

AGREES = "cross-check: dicom2nifti agrees (size, spacing, origin, direction, voxels)"

# dicom2nifti's validations, all left on (its defaults): a series it would only read with one of them
# off is a series it refuses, and we say so rather than loosen it.
_STRICT = {"validate_slicecount": True, "validate_orientation": True, "validate_orthogonal": True,
           "validate_slice_increment": True, "validate_multiframe_implicit": True, "resample": False}

# dicom2nifti raises codes; these are what they mean (common.py, convert_generic.py)
_CODES = {
    "SLICE_INCREMENT_INCONSISTENT": "uneven slice spacing",
    "IMAGE_NOT_ORTHOGONAL": "sheared (gantry-tilted) stack",
    "NON_CUBICAL_IMAGE/GANTRY_TILT": "gantry-tilted (sheared) stack",
    "IMAGE_ORIENTATION_INCONSISTENT": "slices of different orientations",
    "TOO_FEW_SLICES/LOCALIZER": "too few slices (or localizer only)",
    "NON_IMAGING_DICOM_FILES": "files without pixel data",
    "NOT_A_VOLUME": "every slice at the same position",
    # it orders slices by InstanceNumber to find 4-D stacks: numbers out of step with positions split the series
    "MISSING_DICOM_FILES": "stacks of unequal size when ordered by InstanceNumber (instance numbers out of step with slice positions?)",
}


@dataclass(frozen=True)
class CrossCheckTolerance:
    """How close the two readers must be; voxels are compared exactly after rounding to whole HU
    (our volume is int16 HU; dicom2nifti's is the rescaled float)."""

    mm: float = 1e-3  # spacing and origin
    cosine: float = 1e-4  # direction cosines
    hu: float = 0.0


@dataclass(frozen=True)
class CrossCheck:
    """The outcome: `ok`, or the first quantity that differs and by how much (one line)."""

    ok: bool
    quantity: str = ""  # "size", "spacing", "origin", "direction", "voxels" or "reader"
    detail: str = ""

    @property
    def line(self) -> str:
        if self.ok:
            return AGREES
        if self.quantity == "reader":
            return f"cross-check: {self.detail}"
        return f"cross-check: dicom2nifti disagrees on {self.quantity}: {self.detail}"


def _fmt(v: Sequence[float]) -> str:
    return "(" + ", ".join(f"{float(x):.4f}" for x in v) + ")"


def compare_images(ours: sitk.Image, theirs: sitk.Image, tol: CrossCheckTolerance = CrossCheckTolerance(),
                   unmeasured: Optional[np.ndarray] = None, air_hu: Optional[float] = None) -> CrossCheck:
    """Compare two images of one series in physical space, whatever each reader's axis order and
    flips: `theirs` is permuted/flipped (exactly, no resampling) to `ours`'s closest orientation first.

    `unmeasured` ([z, y, x] of `theirs`, after that reorientation): padding / out-of-field voxels that
    our ingest sets to `air_hu` by design; there ours must equal `air_hu` instead of theirs.
    """
    code = sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(ours.GetDirection())
    a = sitk.DICOMOrient(ours, code)
    b = sitk.DICOMOrient(theirs, code)
    if ours.GetDimension() != theirs.GetDimension() or a.GetSize() != b.GetSize():
        return CrossCheck(False, "size", f"ours {ours.GetSize()} voxels, dicom2nifti {theirs.GetSize()}")
    for name, x, y, lim in (("spacing", a.GetSpacing(), b.GetSpacing(), tol.mm),
                            ("origin", a.GetOrigin(), b.GetOrigin(), tol.mm),
                            ("direction", a.GetDirection(), b.GetDirection(), tol.cosine)):
        d = float(np.max(np.abs(np.subtract(x, y))))
        if not d <= lim:  # NaN fails too
            unit = "" if name == "direction" else " mm"
            return CrossCheck(False, name, f"ours {_fmt(x)}, dicom2nifti {_fmt(y)} (differ by {d:.2g}{unit}, tolerance {lim:g}{unit})")
    va = sitk.GetArrayViewFromImage(a).astype(np.float64)
    vb = np.rint(sitk.GetArrayViewFromImage(b).astype(np.float64))
    expect = vb if unmeasured is None or air_hu is None else np.where(unmeasured, float(air_hu), vb)
    bad = ~(np.abs(va - expect) <= tol.hu)
    if bad.any():
        k = tuple(int(i) for i in np.argwhere(bad)[0])
        return CrossCheck(False, "voxels", f"{int(bad.sum())} of {bad.size} differ (first at voxel z,y,x {k}: ours "
                                           f"{va[k]:g} HU, dicom2nifti {vb[k]:g} HU; tolerance {tol.hu:g} HU)")
    return CrossCheck(True)


@contextlib.contextmanager
def _strict_quiet_dicom2nifti() -> Iterator[None]:
    """dicom2nifti's module-level settings forced to its strict defaults and its logging silenced,
    both restored afterwards (another caller in the process may have changed them)."""
    import dicom2nifti.settings as s

    saved = {k: getattr(s, k) for k in _STRICT}
    logger = logging.getLogger("dicom2nifti")
    level, propagate = logger.level, logger.propagate
    try:
        for k, v in _STRICT.items():
            setattr(s, k, v)
        logger.setLevel(logging.CRITICAL + 1)
        logger.propagate = False
        yield
    finally:
        for k, v in saved.items():
            setattr(s, k, v)
        logger.setLevel(level)
        logger.propagate = propagate


class Dicom2niftiRefused(Exception):
    """dicom2nifti would not convert the files (the reason is one line)."""


def read_with_dicom2nifti(files: Sequence[Path]) -> sitk.Image:
    """Convert exactly `files` (one series) with dicom2nifti into a temporary NIfTI and read it back
    with SimpleITK (LPS, like ours). Raises Dicom2niftiRefused with a one-line reason."""
    import pydicom
    from dicom2nifti import convert_dicom

    if not files:
        raise Dicom2niftiRefused("no files")
    with _strict_quiet_dicom2nifti(), tempfile.TemporaryDirectory(prefix="sdpm-d2n-") as tmp:
        out = Path(tmp) / "series.nii.gz"
        try:
            dicoms = [pydicom.dcmread(str(f), force=True) for f in files]
            convert_dicom.dicom_array_to_nifti(dicoms, str(out), reorient_nifti=True)
            return sitk.ReadImage(str(out))
        except Exception as exc:  # noqa: BLE001 - any failure of the second reader is its refusal
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise Dicom2niftiRefused(_CODES.get(msg, msg) + (f" ({msg})" if msg in _CODES else "")) from exc


def unmeasured_voxels(theirs: sitk.Image, reference: sitk.Image, files: Sequence[Path], rules: IngestRules) -> np.ndarray:
    """The voxels of `theirs` (reoriented like `reference`) that our ingest takes as padding or out of
    field (ingest.checks.padding_mask with each file's declared padding, in HU)."""
    import pydicom

    code = sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(reference.GetDirection())
    arr = sitk.GetArrayFromImage(sitk.DICOMOrient(theirs, code)).astype(np.float32)
    pads = set()
    for f in files:
        ds = pydicom.dcmread(str(f), stop_before_pixels=True, force=True)
        slope, icpt = float(ds.get("RescaleSlope", 1) or 1), float(ds.get("RescaleIntercept", 0) or 0)
        pv, pl = ds.get("PixelPaddingValue"), ds.get("PixelPaddingRangeLimit")
        pads.add((None if pv is None else float(pv) * slope + icpt, None if pl is None else float(pl) * slope + icpt))
    mask = np.zeros(arr.shape, dtype=bool)
    for pv, pl in pads or {(None, None)}:
        mask |= padding_mask(arr, pv, pl, rules)
    return mask


def cross_check(ours: sitk.Image, files: Sequence[Path], rules: Optional[IngestRules] = None,
                tol: CrossCheckTolerance = CrossCheckTolerance()) -> CrossCheck:
    """Read `files` with dicom2nifti and compare with `ours` (the ingest's image of the same files)."""
    rules = rules or IngestRules()
    try:
        theirs = read_with_dicom2nifti(files)
    except Dicom2niftiRefused as exc:
        return CrossCheck(False, "reader", f"dicom2nifti refuses the series that the ingest accepts: {exc}")
    return compare_images(ours, theirs, tol, unmeasured_voxels(theirs, ours, files, rules), rules.air_hu)
