"""Build the HU volume of the chosen series from its validated, sorted file list.

SimpleITK (GDCM) decodes each slice, so every transfer syntax scanners write (JPEG Lossless,
JPEG-LS, JPEG 2000, RLE) is read and a truncated file fails on its own name; the order and the
geometry come from our sorted headers, never from SimpleITK's own series logic.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Optional

import numpy as np
import SimpleITK as sitk

from sdpm_cli.errors import InputRejected
from sdpm_cli.ingest import checks, geometry
from sdpm_cli.ingest.discover import Header
from sdpm_cli.ingest.rules import IngestOptions, IngestRules
from sdpm_cli.ingest.select import Candidate
from sdpm_cli.ingest.study import SeriesInfo, SliceRef, Study, Survey

log = logging.getLogger(__name__)


# Pixel data pydicom decodes itself (uncompressed with numpy, RLE with the pylibjpeg-rle plugin: 4 ms
# per 512 x 512 slice against 35 ms for pydicom's numpy RLE and 78 ms for a GDCM read), identical in
# value (tests decode every syntax both ways); everything else goes to GDCM.
_NUMPY_SYNTAXES = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.5", ""}


def _decode_pydicom(path: Path, force: bool) -> np.ndarray:
    import pydicom
    from pydicom.pixels import apply_modality_lut

    ds = pydicom.dcmread(path, force=force)
    if int(ds.get("NumberOfFrames", 1) or 1) != 1:
        raise InputRejected(f"{path} holds {ds.NumberOfFrames} frames; expected one slice per file")
    return np.asarray(apply_modality_lut(ds.pixel_array, ds), dtype=np.float32)


def _decode_gdcm(path: Path) -> np.ndarray:
    try:
        img = sitk.ReadImage(str(path), sitk.sitkFloat32, imageIO="GDCMImageIO")
    except Exception as exc:  # noqa: BLE001 - GDCM's message is long; the file name is what matters
        raise InputRejected(f"cannot decode {path}: truncated, corrupt or unsupported pixel data") from exc
    arr = sitk.GetArrayFromImage(img)
    if arr.ndim == 3:
        if arr.shape[0] != 1:
            raise InputRejected(f"{path} holds {arr.shape[0]} frames; expected one slice per file")
        arr = arr[0]
    return arr


def decode_slice(path: Path, transfer_syntax: str = "", no_preamble: bool = False) -> np.ndarray:
    """One file's pixels in HU (rescale applied) as float32 [rows, cols]: uncompressed and RLE data
    with pydicom, the JPEG family with GDCM (and GDCM again if pydicom cannot decode a file)."""
    if transfer_syntax in _NUMPY_SYNTAXES:
        try:
            return _decode_pydicom(path, no_preamble)
        except InputRejected:
            raise
        except Exception as exc:  # noqa: BLE001 - let GDCM try (and name the file if it fails too)
            log.debug("pydicom could not decode %s (%s); trying GDCM", path, exc)
    return _decode_gdcm(path)


def _names(hs: list[Header], k: int = 3) -> str:
    names = ", ".join(str(h.path) for h in hs[:k])
    return names + (f" and {len(hs) - k} more" if len(hs) > k else "")


def _gap_text(geom: geometry.StackGeometry) -> str:
    lo, hi = float(np.min(geom.steps)), float(np.max(geom.steps))
    a, b, step = max(geom.gaps, key=lambda g: abs(g[2] - geom.spacing))
    what = "a missing slice? expected" if step > 1.5 * geom.spacing else "expected"
    return (f"uneven slice spacing (steps {lo:.2f} to {hi:.2f} mm): a {step:.2f} mm gap between slice positions "
            f"{a:.2f} and {b:.2f} mm along the slice normal ({what} {geom.spacing:.2f} mm)")


def _check_structure(c: Candidate, opts: IngestOptions, warnings: list[str]) -> None:
    """Refuse (or plan to correct) faults that the headers alone reveal."""
    label = c.info.label
    if c.mixed:
        sizes = "; ".join(f"{len(g)} images {g[0].cols}x{g[0].rows} ({_names(g, 2)})" for g in c.mixed)
        raise InputRejected(
            f"{label} mixes image sizes/orientations: {len(c.headers)} images {c.first.cols}x{c.first.rows} and {sizes}"
        )
    if c.outliers:
        warnings.append(
            f"dropped {len(c.outliers)} localizer-like image(s) of another size/orientation from {label}: {_names(c.outliers)}"
        )
    g = c.geom
    faults = []
    if g.tilted and not opts.correct_tilt:
        faults.append(f"a gantry tilt of {g.tilt_deg:.1f} degrees (from slice positions)")
    if not g.even and not opts.resample_gaps:
        faults.append(_gap_text(g))
    if faults:
        flags = (["--correct-tilt"] if g.tilted and not opts.correct_tilt else []) + (
            ["--resample-gaps"] if not g.even and not opts.resample_gaps else [])
        raise InputRejected(
            f"{label} has " + " and ".join(faults) + f"; rerun with {' '.join(flags)} to resample it (with a warning)"
        )


def _decode_all(c: Candidate, warnings: list[str]) -> list[np.ndarray]:
    """Decode every selected slice; exact duplicates are dropped, conflicting ones refused."""
    g = c.geom
    cache: dict[int, np.ndarray] = {}

    def get(i: int) -> np.ndarray:
        if i not in cache:
            h = c.headers[i]
            arr = decode_slice(h.path, h.transfer_syntax, h.no_preamble)
            if arr.shape != (h.rows, h.cols):
                raise InputRejected(f"{h.path}: decoded {arr.shape[1]}x{arr.shape[0]} pixels, header says {h.cols}x{h.rows}")
            cache[i] = arr
        return cache[i]

    dropped = []
    for kept, other in g.duplicates:
        if np.array_equal(get(kept), get(other)):
            dropped.append(c.headers[other])
        else:
            pos = float(np.asarray(c.headers[kept].ipp) @ geometry.plane_axes(c.first.iop)[2])
            raise InputRejected(
                f"{c.info.label}: two different images at the same position ({pos:.2f} mm along the normal): "
                f"{c.headers[kept].path} and {c.headers[other].path}"
            )
    if dropped:
        warnings.append(f"dropped {len(dropped)} exact duplicate slice(s) from {c.info.label}: {_names(dropped)}")
    return [get(i) for i in g.unique]


def _apply_padding(slices: list[np.ndarray], hs: list[Header], rules: IngestRules) -> tuple[np.ndarray, np.ndarray]:
    """Stack to [z, y, x]; returns (hu, padded) with declared padding and out-of-field pixels flagged."""
    vol = np.stack(slices).astype(np.float32)
    pad = np.zeros(vol.shape, dtype=bool)
    for k, h in enumerate(hs):
        slope = h.slope if h.slope is not None else 1.0
        icpt = h.intercept if h.intercept is not None else 0.0
        pv = None if h.padding_value is None else h.padding_value * slope + icpt
        pl = None if h.padding_limit is None else h.padding_limit * slope + icpt
        pad[k] = checks.padding_mask(vol[k], pv, pl, rules)
    return vol, pad


def resample_stack(
    vol: np.ndarray, ipps: np.ndarray, iop, pixel_spacing, air: float
) -> sitk.Image:
    """Resample a sheared and/or unevenly spaced stack onto a regular grid stacked along the slices' path.

    The new grid keeps the in-plane spacing, takes the slices' stacking direction as its third axis
    (so a tilted stack becomes untilted) and the median step along it; values are linearly interpolated
    in physical space between the two nearest source slices; outside the source slab is air.
    """
    from scipy.ndimage import map_coordinates

    r, c, n = geometry.plane_axes(iop)
    P = np.asarray(ipps, float)
    d = P[-1] - P[0]
    d = d / np.linalg.norm(d)
    if np.dot(d, n) < 0:
        d = -d
    e1 = r - np.dot(r, d) * d
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(d, e1)
    dx, dy = float(pixel_spacing[1]), float(pixel_spacing[0])
    s = (P - P[0]) @ d  # where each source slice sits along the stacking direction
    sz = float(np.median(np.diff(s)))
    rows, cols = vol.shape[1:]
    # Bounding box of every source pixel centre in the new frame (e1, e2, d).
    corners = np.array([[0, 0], [cols - 1, 0], [0, rows - 1], [cols - 1, rows - 1]], float)
    pts = np.concatenate([P[k] + corners[:, :1] * dx * r + corners[:, 1:] * dy * c for k in range(len(P))])
    u = (pts - P[0]) @ np.stack([e1, e2, d], axis=1)
    lo, hi = u.min(axis=0), u.max(axis=0)
    # ceil: every source pixel centre falls inside the grid, so every one gets a mask value back
    nx = int(np.ceil((hi[0] - lo[0]) / dx - 1e-6)) + 1
    ny = int(np.ceil((hi[1] - lo[1]) / dy - 1e-6)) + 1
    nz = int(np.ceil((hi[2] - lo[2]) / sz - 1e-6)) + 1  # a tilted slice spans several untilted planes
    origin = P[0] + lo[0] * e1 + lo[1] * e2 + lo[2] * d
    M_inv = np.linalg.inv(np.stack([r, c, d], axis=1))  # physical offset -> (along row, along column, along path)
    out = np.empty((nz, ny, nx), dtype=np.float32)
    jj, ii = np.meshgrid(np.arange(ny), np.arange(nx), indexing="ij")
    for m in range(nz):
        p = origin + (ii * dx)[..., None] * e1 + (jj * dy)[..., None] * e2 + (m * sz) * d
        a = (p - P[0]) @ M_inv.T
        t = a[..., 2]
        # up to half a step past the end slices takes the end slice (the grid's last row may overhang)
        t = np.where((t < s[0]) & (t >= s[0] - sz / 2), s[0], np.where((t > s[-1]) & (t <= s[-1] + sz / 2), s[-1], t))
        k = np.interp(t, s, np.arange(len(s)), left=-1.0, right=len(s) + 1.0)
        coords = np.stack([k, a[..., 1] / dy, a[..., 0] / dx])
        out[m] = map_coordinates(vol, coords, order=1, mode="constant", cval=air)
    img = sitk.GetImageFromArray(np.clip(np.rint(out), -32768, 32767).astype(np.int16))
    img.SetOrigin(tuple(origin))
    img.SetSpacing((dx, dy, sz))
    img.SetDirection(tuple(np.stack([e1, e2, d], axis=1).ravel()))
    return img


def native_image(vol_hu: np.ndarray, first_ipp, iop, pixel_spacing, spacing_z: float) -> sitk.Image:
    """int16 image on the source grid: origin at the first slice, axes row/column/normal."""
    img = sitk.GetImageFromArray(np.clip(np.rint(vol_hu), -32768, 32767).astype(np.int16))
    img.SetOrigin(tuple(float(x) for x in first_ipp))
    img.SetSpacing((float(pixel_spacing[1]), float(pixel_spacing[0]), float(spacing_z)))
    img.SetDirection(tuple(geometry.direction_matrix(iop).ravel()))
    return img


def load_candidate(c: Candidate, opts: IngestOptions, survey: Optional[Survey] = None) -> Study:
    """Validate, decode and assemble one series into a Study (or refuse with one line)."""
    rules = opts.rules
    warnings: list[str] = []
    _check_structure(c, opts, warnings)
    slices = _decode_all(c, warnings)
    hs = [c.headers[i] for i in c.geom.unique]
    vol, pad = _apply_padding(slices, hs, rules)
    hu = checks.hu_check(checks.hu_sample(vol, pad, float(c.geom.spacing), rules), rules)
    missing_rescale = [h for h in hs if h.slope is None or h.intercept is None]
    if not hu.passed:
        why = "rescale slope/intercept missing and the values are not HU" if missing_rescale else "HU check failed"
        raise InputRejected(f"{c.info.label}: {why}: {hu.reason}")
    if missing_rescale:
        warnings.append(f"{len(missing_rescale)} slice(s) lack rescale slope/intercept; values taken as HU (HU check passed)")
    if pad.any():
        vol[pad] = rules.air_hu
        log.debug("%d padding / out-of-field pixels set to air", int(pad.sum()))
    lossy = sorted({h.lossy for h in hs if h.lossy})
    if lossy:
        n = sum(bool(h.lossy) for h in hs)
        what = f"{c.info.label}: {n} of {len(hs)} slice(s) lossy-compressed ({', '.join(lossy)})"
        if opts.refuse_lossy:
            raise InputRejected(f"{what}; refused because --refuse-lossy was given")
        warnings.append(f"{what}: HU values are approximate near edges and lesion volumes may differ "
                        "from the original images (use --refuse-lossy to refuse such studies)")
    bare = sum(h.no_preamble for h in hs)
    if bare:
        log.info("%d file(s) of %s have no DICOM preamble; read as bare data sets", bare, c.info.label)
    contrast = sorted({h.contrast for h in hs if h.contrast})
    if contrast:
        warnings.append(f"contrast agent recorded ({', '.join(contrast)}): the model expects non-contrast CT; "
                        "enhancing vessels and tissue may be read as hemorrhage")
    g = c.geom
    corrected = []
    ipps = np.array([h.ipp for h in hs])
    if g.tilted or not g.even:
        image = resample_stack(vol, ipps, c.first.iop, c.first.pixel_spacing, rules.air_hu)
        if g.tilted:
            corrected.append("tilt")  # the word "tilt" is what users (and tests) look for
            warnings.append(
                f"gantry tilt of {g.tilt_deg:.1f} degrees corrected: resampled to an untilted grid; "
                "masks map back onto every source slice by physical position"
            )
        if not g.even:
            corrected.append("gaps")
            warnings.append(f"{_gap_text(g)}; resampled to a regular {image.GetSpacing()[2]:.2f} mm grid (linear interpolation)")
    else:
        spacing_z = g.spacing if len(hs) > 1 else (c.first.thickness or 1.0)
        image = native_image(vol, hs[0].ipp, c.first.iop, c.first.pixel_spacing, spacing_z)
    info = c.info
    info.spacing = tuple(float(x) for x in image.GetSpacing())
    refs = [
        SliceRef(path=h.path, ipp=h.ipp, iop=h.iop, pixel_spacing=h.pixel_spacing, rows=h.rows, cols=h.cols,
                 instance_number=h.instance_number, sop_instance_uid=h.sop_instance, sop_class_uid=h.sop_class)
        for h in hs
    ]
    return Study(image=image, series=info, warnings=warnings, slices=refs, survey=survey, hu=hu.to_dict(), corrected=corrected,
                 subject_key=c.first.subject_key)


def load_volume_file(path: Path, rules: IngestRules, skull_stripped: bool = False) -> Study:
    """A NIfTI / NRRD / MetaImage volume taken as HU (still HU-checked and held to the same slice and
    coverage minimums). NIfTI headers are checked for truncation and shear first (files.check_nifti)."""
    from sdpm_cli.ingest.files import check_nifti, format_name, nonfinite_text, shear_deg

    fmt = format_name(path)
    if fmt == "NIfTI":
        check_nifti(path, rules.max_orientation_skew_deg)
    try:
        img = sitk.ReadImage(str(path))
    except Exception as exc:  # noqa: BLE001
        raise InputRejected(f"cannot read {fmt} {path}: truncated or corrupt file") from exc
    if img.GetDimension() != 3 or img.GetNumberOfComponentsPerPixel() != 1:
        raise InputRejected(f"{path}: expected a 3-D scalar volume, got {img.GetDimension()}-D with {img.GetNumberOfComponentsPerPixel()} component(s)")
    D = np.array(img.GetDirection()).reshape(3, 3)
    skew = shear_deg(D)  # NRRD / MetaImage carry their own direction matrix
    if skew > rules.max_orientation_skew_deg:
        raise InputRejected(f"{fmt} {path.name}: sheared axes ({skew:.1f} degrees from orthogonal); "
                            "resample it to an orthogonal grid first")
    arr = sitk.GetArrayFromImage(img).astype(np.float32)
    label = f"{fmt} {Path(path).name}"
    bad = ~np.isfinite(arr)
    if bad.any():  # NRRD / MetaImage keep NaN (NIfTI ones were found in check_nifti)
        raise InputRejected(nonfinite_text(label, bad.transpose(2, 1, 0)))
    nz = arr.shape[0]
    sx, sy, sz = img.GetSpacing()
    if not all(math.isfinite(v) and v > 0 for v in (sx, sy, sz)):
        raise InputRejected(f"{label}: voxel spacing {sx:g} x {sy:g} x {sz:g} mm is not a positive size")
    coverage = nz * sz
    plane = geometry.orientation_name(np.concatenate([D[:, 0], D[:, 1]]), rules.max_axial_angle_deg)
    if plane != "axial":
        raise InputRejected(f"{label}: {plane} slices, not axial (reorient the volume so slices are axial)")
    if nz < rules.min_slices:
        raise InputRejected(f"{label}: only {nz} slices (clinical minimum {rules.min_slices})")
    if coverage < rules.min_coverage_mm:
        raise InputRejected(f"{label}: covers only {coverage:.0f} mm head-feet (clinical minimum {rules.min_coverage_mm:.0f} mm)")
    from sdpm_cli.ingest.anatomy import unstrip

    arr, brain = unstrip(arr, rules, label, skull_stripped)  # skull-stripped: air outside the brain
    pad = arr < rules.min_valid_hu
    hu = checks.hu_check(checks.hu_sample(arr, pad, float(sz), rules), rules)
    if not hu.passed:
        from sdpm_cli.ingest.anatomy import background_of, looks_skull_stripped

        v, bg = background_of(arr)
        hint = ""
        if brain is None and v is not None and v > -500:  # a constant non-air border: why, in the user's terms
            fg = arr[~bg][::97]
            med = float(np.median(fg)) if fg.size else float("nan")
            if 900.0 <= med <= 1300.0:  # soft tissue near 1024 + 40: unsigned storage that lost its rescale intercept
                hint = (f"; the values look shifted by +1024 (tissue median {med:.0f}): stored without its rescale "
                        "intercept? convert to HU (subtract 1024) first")
            elif -10.0 <= med <= 80.0:  # brain-like tissue on a constant border: a stripped brain not recognised
                hint = (f"; the border is a constant {v:g}, as in a skull-stripped volume, but "
                        f"{looks_skull_stripped(arr, rules)[2]}")
        raise InputRejected(f"{label}: HU check failed: {hu.reason}{hint}")
    arr[pad] = rules.air_hu
    out = sitk.GetImageFromArray(np.clip(np.rint(arr), -32768, 32767).astype(np.int16))
    out.CopyInformation(img)
    iop = tuple(float(x) for x in np.concatenate([D[:, 0], D[:, 1]]))
    ny, nx = arr.shape[1:]
    refs = [SliceRef(path=Path(path), ipp=tuple(img.TransformIndexToPhysicalPoint((0, 0, k))), iop=iop,
                     pixel_spacing=(sy, sx), rows=ny, cols=nx) for k in range(nz)]
    info = SeriesInfo(uid="", number=None, description=Path(path).name, kernel="", kernel_class="unknown",
                      thickness_mm=sz, n_slices=nz, spacing=(sx, sy, sz), tilt_deg=0.0,
                      orientation=geometry.orientation_name(iop, rules.max_axial_angle_deg), coverage_mm=coverage,
                      rows=ny, cols=nx, source=fmt.lower())
    return Study(image=out, series=info, warnings=[], slices=refs, hu=hu.to_dict(), brain=brain)
