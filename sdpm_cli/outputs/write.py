"""Writing one study's outputs as a transaction: every requested file or none.

Each output is written to a temporary beside its destination, then all are renamed together, the
mask last: a study folder holding its mask is finished (batch --continue and serve rely on this),
one without it is not. The same writer serves `sdpm segment`, batch, serve and the Python API.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Mapping, Optional

from sdpm_cli.errors import UsageError
from sdpm_cli.outputs.atomic import atomic_path, check_distinct

# Every output a study can have, and the command-line option that names it (for messages).
OPTION = {"mask": "--out", "report": "--report", "csv": "--csv", "dicom_seg": "--dicom-seg", "dicom_sr": "--dicom-sr",
          "preview": "--preview", "probabilities": "--probabilities"}
OUTPUT_KINDS = tuple(OPTION)

PHI_TAGS = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "AccessionNumber", "StudyDate",
            "StudyInstanceUID", "InstitutionName")


def check_output_paths(outputs: Mapping[str, Path], study: Optional[Path] = None, where: str = "") -> None:
    """Usage error, before any work, when two outputs (or an output and the input) are one file."""
    unknown = set(outputs) - set(OPTION)
    if unknown:
        raise ValueError(f"unknown output kind(s): {', '.join(sorted(unknown))}")
    check_sr_has_seg(outputs)
    named = {f"{OPTION[k]}{where}": p for k, p in outputs.items()}
    if study is not None and not Path(study).is_dir():
        named = {"the input study": study, **named}
    check_distinct(named)


def check_sr_has_seg(outputs: Mapping[str, Path]) -> None:
    """The SR's region measurements reference the SEG's segments: it is written beside one."""
    if outputs.get("dicom_sr") and not outputs.get("dicom_seg"):
        raise UsageError("--dicom-sr needs --dicom-seg (the SR references the segments of that DICOM SEG)")


def needs_dicom(outputs: Mapping[str, Path]) -> Optional[str]:
    """The option of a requested output that needs a DICOM study (SEG, SR), or None."""
    return next((OPTION[k] for k in ("dicom_seg", "dicom_sr") if outputs.get(k)), None)


def check_dicom_outputs(seg, outputs: Mapping[str, Path]) -> None:
    """DICOM SEG/SR reference the source instances: refuse them for a volume file or a resampled grid."""
    flag = needs_dicom(outputs)
    if flag is None:
        return
    if not all(getattr(s, "sop_instance_uid", "") for s in getattr(seg.study, "slices", None) or [None]):
        raise UsageError(f"{flag} needs a DICOM input study (this one is a volume file)")
    if getattr(seg.study, "corrected", False):
        raise UsageError(f"{flag} is not available for a tilt-corrected or gap-resampled series "
                         "(its grid is not the source grid); use the NIfTI mask")


def read_phi(study) -> dict:
    """Patient identifiers from the first source slice, only ever read when --include-phi is given."""
    slices = getattr(study, "slices", None)
    if not slices:
        return {}
    import pydicom

    ds = pydicom.dcmread(str(slices[0].path), stop_before_pixels=True, specific_tags=list(PHI_TAGS))
    return {t: str(ds.get(t, "")) for t in PHI_TAGS}


def write_outputs(seg, outputs: Mapping[str, Path], *, include_phi: bool = False, force: bool = False) -> None:
    """Write `seg`'s requested outputs (kind -> path; `mask` required) as one transaction."""
    import SimpleITK as sitk

    if "mask" not in outputs:
        raise ValueError("outputs need a mask")
    check_dicom_outputs(seg, outputs)
    with contextlib.ExitStack() as stack:
        order = ["mask"] + [k for k in outputs if k != "mask"]  # entered first: renamed into place last
        tmp = {k: stack.enter_context(atomic_path(outputs[k], force)) for k in order}
        rows = None  # the lesion table with each lesion's location, made once for report, CSV, SR and preview
        if {"report", "csv", "preview", "dicom_sr"} & set(tmp):
            # imported only here: the location context (scipy.spatial) is 0.2 s of a mask-only `out` run
            from sdpm_cli.outputs.report import report_from_segmentation, report_to_csv, segmentation_lesion_rows

            rows = segmentation_lesion_rows(seg)
        rep = None
        if {"report", "csv", "dicom_sr"} & set(tmp):
            rep = report_from_segmentation(seg, include_phi=include_phi, phi=read_phi(seg.study) if include_phi else None,
                                           lesions=rows)
            if "report" in tmp:
                tmp["report"].write_text(json.dumps(rep, indent=2) + "\n")
            if "csv" in tmp:
                tmp["csv"].write_text(report_to_csv(rep))
        if "probabilities" in tmp:
            sitk.WriteImage(seg.probability_image(), str(tmp["probabilities"]), useCompression=True)
        if "preview" in tmp:
            from sdpm_cli.outputs.preview import domain_banner, model_note, write_preview

            write_preview(seg.study.image, seg.labels, tmp["preview"], volumes_ml=dict(seg.volumes), force=True,
                          lesions=rows, banner=domain_banner(getattr(seg.study, "domain", None)),
                          note=model_note(seg.model))
        if "dicom_seg" in tmp:
            from sdpm_cli import __version__
            from sdpm_cli.outputs.dicomseg import write_dicom_seg

            write_dicom_seg(seg.labels, [s.path for s in seg.study.slices], tmp["dicom_seg"], force=True,
                            algorithm_name=f"sdpm {seg.model.name}", algorithm_version=__version__)
        if "dicom_sr" in tmp:  # after the SEG: the SR references its segments
            _write_sr(seg, rep, tmp["dicom_seg"], tmp["dicom_sr"])
        sitk.WriteImage(seg.labels, str(tmp["mask"]), useCompression=True)


def _write_sr(seg, report: Mapping, seg_file: Path, dest: Path) -> None:
    """The TID 1500 SR from the same report dict as the JSON and CSV (one source of numbers)."""
    from sdpm_cli.outputs.dicomsr import write_dicom_sr

    write_dicom_sr(report, [s.path for s in seg.study.slices], seg_file, dest, force=True)
