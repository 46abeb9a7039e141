"""The production processor: segment a received study with the model (loaded once, here) and write
its outputs like batch mode; returns the DICOM files to forward (the SEG).

Kept small on purpose: the engine (sdpm_cli/engine.py) will replace the body of `make_processor`
with its own call, adding the SR (and an SC preview) to the files returned."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Optional, Sequence

from sdpm_cli.modes import DEFAULT_MODE


def make_processor(model: Optional[Path] = None, device: str = "auto", mode: str = DEFAULT_MODE, seed: int = 0,
                   warn: Optional[Callable[[str], None]] = None) -> Callable[[Path, Path], Sequence[Path]]:
    """Load the model now (a bad checkpoint fails at start, not on the first study) and return
    `process(study_dir, result_dir) -> [SEG]`."""
    from sdpm_cli.pipeline import load_model

    lm, warnings = load_model(model, device)
    for msg in warnings:
        if warn is not None:
            warn(msg)

    def process(study_dir: Path, result_dir: Path) -> Sequence[Path]:
        import SimpleITK as sitk

        from sdpm_cli import __version__
        from sdpm_cli.outputs.atomic import write_text
        from sdpm_cli.outputs.dicomseg import write_dicom_seg
        from sdpm_cli.outputs.report import report_from_segmentation
        from sdpm_cli.pipeline import segment_study

        seg = segment_study(study_dir, model=lm, mode=mode, device=device, seed=seed)
        result_dir = Path(result_dir)
        write_text(result_dir / "report.json", json.dumps(report_from_segmentation(seg), indent=2) + "\n")
        seg_path = write_dicom_seg(seg.labels, [s.path for s in seg.study.slices], result_dir / "seg.dcm",
                                   algorithm_name=f"sdpm {seg.model.name}", algorithm_version=__version__)
        sitk.WriteImage(seg.labels, str(result_dir / "mask.nii.gz"), useCompression=True)  # the folder is renamed whole
        return [seg_path]

    return process
