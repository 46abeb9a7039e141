"""The production processor: the segmentation engine behind the node (the same one batch uses).

A received study is segmented with the model loaded once, its outputs written as one transaction
like a batch study (mask, report, DICOM SEG, DICOM SR), and the SEG and SR returned for forwarding."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional, Sequence

from sdpm_cli.modes import DEFAULT_MODE

# A served study's outputs besides its mask, in its result folder (the folder is renamed into place whole).
RESULT_FILES = {"report": "report.json", "dicom_seg": "seg.dcm", "dicom_sr": "sr.dcm"}
FORWARDED = ("dicom_seg", "dicom_sr")


def make_processor(model: Optional[Path] = None, device: str = "auto", mode: str = DEFAULT_MODE, seed: int = 0,
                   warn: Optional[Callable[[str], None]] = None,
                   options: "Optional[SegmentOptions]" = None) -> Callable[[Path, Path], Sequence[Path]]:  # noqa: F821
    """Load the model now (a bad checkpoint fails at start, not on the first study) and return
    `process(study_dir, result_dir) -> [SEG, SR]`."""
    from sdpm_cli.engine import Engine, StudyJob, study_outputs
    from sdpm_cli.pipeline import SegmentOptions

    engine = Engine(model, device=device, options=options or SegmentOptions(mode=mode, seed=seed))
    for msg in engine.warnings:
        if warn is not None:
            warn(msg)

    def process(study_dir: Path, result_dir: Path) -> Sequence[Path]:
        outputs = study_outputs(Path(result_dir), RESULT_FILES)  # the mask and these, like a batch study
        engine.run_study(StudyJob(Path(study_dir).name, Path(study_dir), outputs), replace=True)
        return [outputs[k] for k in FORWARDED]

    return process
