"""DICOM Segmentation (SEG) output: the lesion mask as an object PACS and viewers can overlay.

The SEG is encoded by highdicom (BINARY, one segment per class present in the mask or requested),
referencing every source CT slice frame by frame. The mask is sampled onto each source slice's own
pixel grid by physical position (nearest), so it lines up even when the labels live on a corrected
(untilted / regularised) grid; on the native grid this is an exact copy of the voxels.

A SEG must carry the patient and study of its source (that is how PACS files it), so the patient
module is copied from the source images; nothing else identifying is added.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import SimpleITK as sitk

from sdpm_cli import __version__
from sdpm_cli.errors import InputRejected
from sdpm_cli.labels import CLASSES
from sdpm_cli.outputs.atomic import atomic_path, check_writable

# SNOMED CT: property category "Morphologically abnormal structure" (CID 7150), types from the
# morphologic-abnormality hierarchy, anatomic region Brain.
CATEGORY = ("49755003", "SCT", "Morphologically Abnormal Structure")
SEGMENT_TYPES = {
    1: ("55641003", "SCT", "Infarct"),
    2: ("50960005", "SCT", "Hemorrhage"),
}
BRAIN = ("12738006", "SCT", "Brain")
# Patient/study attributes a SEG copies from its source and must hold (empty is allowed: type 2).
TYPE2_COPIED = (
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex",
    "StudyDate", "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber",
)  # fmt: skip


def _code(triple):
    from pydicom.sr.coding import Code

    return Code(*triple)


def segment_descriptions(labels_present: Sequence[int], algorithm_name: str, algorithm_version: str):
    """highdicom SegmentDescriptions for the given class labels, numbered 1.. in that order."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    algo = hd.AlgorithmIdentificationSequence(
        name=algorithm_name, version=algorithm_version, family=codes.cid7162.ArtificialIntelligence
    )
    out = []
    for number, label in enumerate(labels_present, start=1):
        out.append(
            hd.seg.SegmentDescription(
                segment_number=number,
                segment_label=CLASSES[label],
                segmented_property_category=_code(CATEGORY),
                segmented_property_type=_code(SEGMENT_TYPES[label]),
                algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
                algorithm_identification=algo,
                anatomic_regions=[_code(BRAIN)],
            )
        )
    return out


def _read_sources(source_files: Sequence[Path]):
    import pydicom

    if not source_files:
        raise InputRejected("no source DICOM files to reference in the SEG")
    datasets = []
    for p in source_files:
        try:
            ds = pydicom.dcmread(str(p), stop_before_pixels=True)
        except Exception as exc:  # noqa: BLE001 - any unreadable file is a refusal, named
            raise InputRejected(f"cannot read source DICOM {Path(p).name}: {exc}") from None
        for tag in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "Rows", "Columns"):
            if tag not in ds:
                raise InputRejected(f"source DICOM {Path(p).name} has no {tag}: cannot place the SEG frames")
        for tag in TYPE2_COPIED:  # anonymised exports drop these; a SEG needs them present (may be empty)
            if tag not in ds:
                setattr(ds, tag, "")
        datasets.append(ds)
    uids = {str(ds.SeriesInstanceUID) for ds in datasets}
    if len(uids) != 1:
        raise InputRejected(f"the source files belong to {len(uids)} series; a SEG references one")
    return datasets


def _slice_refs(datasets, source_files):
    from sdpm_cli.ingest.study import SliceRef

    return [
        SliceRef(
            path=Path(p),
            ipp=tuple(float(v) for v in ds.ImagePositionPatient),
            iop=tuple(float(v) for v in ds.ImageOrientationPatient),
            pixel_spacing=(float(ds.PixelSpacing[0]), float(ds.PixelSpacing[1])),
            rows=int(ds.Rows),
            cols=int(ds.Columns),
        )
        for ds, p in zip(datasets, source_files)
    ]


def _check_inside(labels: sitk.Image, refs) -> None:
    """Every source slice must cross the label volume: otherwise these are not its source files."""
    nz = labels.GetSize()[2]
    for ref in refs:
        rows, cols = ref.rows, ref.cols
        r, c = np.array(ref.iop[:3]), np.array(ref.iop[3:])
        centre = np.array(ref.ipp) + r * (cols - 1) / 2 * ref.pixel_spacing[1] + c * (rows - 1) / 2 * ref.pixel_spacing[0]
        k = labels.TransformPhysicalPointToContinuousIndex(tuple(float(v) for v in centre))[2]
        if not (-0.5 <= k <= nz - 0.5):
            raise InputRejected(
                f"source slice {ref.path.name} lies outside the mask volume (slice index {k:.1f} of {nz}): "
                "the files are not the series the mask was made from"
            )


def source_frames(labels: sitk.Image, source_files: Sequence[Path]) -> tuple[list, np.ndarray]:
    """(pydicom headers, label map [n_files, rows, cols]) with frame i on source file i's pixel grid."""
    from sdpm_cli.ingest.study import map_to_slices

    datasets = _read_sources(source_files)
    refs = _slice_refs(datasets, source_files)
    shapes = {(r.rows, r.cols) for r in refs}
    if len(shapes) != 1:
        raise InputRejected("the source slices differ in size; a SEG of this series is not supported")
    _check_inside(labels, refs)
    frames = np.stack(map_to_slices(sitk.Cast(labels, sitk.sitkUInt8), refs))
    return datasets, frames


def write_dicom_seg(
    labels: sitk.Image,
    source_files: Sequence[Path],
    dest,
    *,
    force: bool = False,
    algorithm_name: str = "sdpm",
    algorithm_version: str = __version__,
    series_number: int = 901,
    series_description: str = "SDPM stroke lesions",
    include_empty_segments: bool = True,
) -> Path:
    """Write the label map as a DICOM SEG referencing `source_files` (the series, slice i = file i).

    Segments: infarct (label 1) and hemorrhage (label 2). With include_empty_segments (default) both
    are described even when empty, so a reader always finds both classes; empty frames are omitted.
    A mask with no lesion at all still yields a valid SEG (one empty frame is kept).
    """
    import highdicom as hd
    from pydicom.uid import generate_uid

    check_writable(dest, force)
    datasets, frames = source_frames(labels, source_files)
    present = [c for c in CLASSES if (frames == c).any()]
    wanted = list(CLASSES) if include_empty_segments else present
    if not wanted:
        wanted = [1]  # a SEG needs one segment; an empty infarct segment says "nothing found"
    pixel = np.stack([frames == c for c in wanted], axis=-1).astype(np.uint8)  # [frames, rows, cols, segments]
    try:
        seg = hd.seg.Segmentation(
            source_images=datasets,
            pixel_array=pixel,
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=segment_descriptions(wanted, algorithm_name, algorithm_version),
            series_instance_uid=generate_uid(),
            series_number=series_number,
            sop_instance_uid=generate_uid(),
            instance_number=1,
            manufacturer="sdpm",
            manufacturer_model_name=algorithm_name,
            software_versions=f"sdpm {__version__}",
            device_serial_number="none",
            series_description=series_description,
            content_label="LESIONS",
            content_description="Stroke lesions: infarct and hemorrhage",
            omit_empty_frames=True,  # highdicom keeps all frames itself when every one is empty
        )
    except (ValueError, TypeError) as exc:
        raise InputRejected(f"cannot encode the DICOM SEG: {str(exc).splitlines()[0]}") from None
    with atomic_path(dest, force) as tmp:
        seg.save_as(str(tmp))
    return Path(dest)


def read_dicom_seg(path, source_files: Sequence[Path]) -> np.ndarray:
    """Decode a SEG written here back to a label map [n_source, rows, cols] in source-file order
    (round-trip checks: the frames are matched to the sources by SOP Instance UID)."""
    import highdicom as hd
    import pydicom

    seg = hd.seg.segread(str(path))
    uids = [str(pydicom.dcmread(str(p), stop_before_pixels=True).SOPInstanceUID) for p in source_files]
    numbers = seg.get_segment_numbers()
    labels_of = {}
    for n in numbers:
        desc = seg.get_segment_description(n)
        code = str(desc.segmented_property_type.value)
        labels_of[n] = next(k for k, v in SEGMENT_TYPES.items() if v[0] == code)
    pix = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=uids, segment_numbers=numbers, assert_missing_frames_are_empty=True
    )  # [n, rows, cols, segments]
    out = np.zeros(pix.shape[:3], np.uint8)
    for i, n in enumerate(numbers):
        out[pix[..., i] > 0] = labels_of[n]
    return out
