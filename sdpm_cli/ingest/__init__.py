"""Study ingest: find, validate and choose a CT series, and read it as an int16 HU volume.

Every command reads studies through `load_study`; `survey_study` explains the series choice.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

from sdpm_cli.errors import InputRejected
from sdpm_cli.ingest.checks import HUCheck, hu_check
from sdpm_cli.ingest.discover import Discovery, discover, read_header
from sdpm_cli.ingest.files import VOLUME_SUFFIXES, is_study_file, is_volume_file, is_zip, study_name
from sdpm_cli.ingest.rules import IngestOptions, IngestRules
from sdpm_cli.ingest.select import kernel_class
from sdpm_cli.ingest.study import SeriesInfo, SeriesRow, SliceRef, Study, Survey, map_to_slices

__all__ = [
    "load_study", "survey_study", "Study", "SeriesInfo", "SeriesRow", "SliceRef", "Survey",
    "IngestOptions", "IngestRules", "HUCheck", "hu_check", "kernel_class", "map_to_slices",
    "is_volume_file", "is_study_file", "is_zip", "study_name", "VOLUME_SUFFIXES", "series_files",
]

PathLike = Union[str, Path]


def _resolve(path: PathLike, series_uid: Optional[str], rules: IngestRules) -> tuple[Path, Optional[str]]:
    """A folder as is; a zip is unpacked; a single DICOM file means its folder, restricted to its series."""
    from sdpm_cli.ingest.files import unzip_study

    p = Path(path)
    if not p.exists():
        raise InputRejected(f"no such file or folder: {p}")
    if p.is_dir():
        return p, series_uid
    if is_zip(p):
        return unzip_study(p, rules.max_zip_bytes, rules.max_zip_members), series_uid
    kind, header = read_header(p)
    if header is None:
        raise InputRejected(f"{p} is neither a DICOM image, a folder, a zip nor a volume file "
                            f"({', '.join(VOLUME_SUFFIXES)}) ({kind.replace('_', ' ')})")
    return p.parent, series_uid or header.series_uid


def _survey(path: Path, options: IngestOptions):
    from sdpm_cli.ingest.select import survey

    return survey(discover(path), options.rules, options.series_uid)


def survey_study(path: PathLike, *, series_uid: Optional[str] = None, rules: Optional[IngestRules] = None) -> Survey:
    """Every series under `path` with the chosen one flagged and why each other was left out (headers only)."""
    rules = rules or IngestRules()
    if is_volume_file(path):
        raise InputRejected(f"{path} is a single volume file: there is no series to choose")
    root, uid = _resolve(path, series_uid, rules)
    result, _ = _survey(root, IngestOptions(series_uid=uid, rules=rules))
    return result


def series_files(path: PathLike, *, series_uid: Optional[str] = None, rules: Optional[IngestRules] = None) -> tuple[str, list[Path]]:
    """The label and files of the series a load would read (the chosen one, else the first CT series),
    from headers alone, also when the load refuses it: what a second reader is given (ingest.crosscheck)."""
    rules = rules or IngestRules()
    root, uid = _resolve(path, series_uid, rules)
    result, cands = _survey(root, IngestOptions(series_uid=uid, rules=rules))
    row = result.chosen or next((r for r in result.rows if r.kind == "ct"), None)
    cand = None if row is None else next((c for c in cands if c.info is row.info), None)
    if cand is None:
        raise InputRejected(result.refusal or f"no CT series under {path}")
    return cand.info.label, [h.path for h in cand.headers]


def load_study(
    path: PathLike,
    *,
    series_uid: Optional[str] = None,
    correct_tilt: bool = False,
    resample_gaps: bool = False,
    refuse_lossy: bool = False,
    rules: Optional[IngestRules] = None,
    skull_stripped: bool = False,
    options: Optional[IngestOptions] = None,
    anatomy: bool = True,
) -> Study:
    """Read a study (DICOM folder, a DICOM file's folder, a zipped DICOM folder, or a NIfTI / NRRD /
    MetaImage volume in HU) as a validated HU volume.

    Raises InputRejected (exit 3) with a one-line reason for anything unsafe to measure, including a
    volume that is not a head (ingest.anatomy); out-of-domain heads get warnings and `Study.domain` flags.
    `skull_stripped`: the NIfTI is brain-extracted (also detected without it).
    `anatomy=False` skips the head checks (refusals and out-of-domain flags) but not the geometry and
    HU validation: for labelled training cases, whose label already says what the volume holds and
    whose randomised anatomy reaches beyond what a clinical scan shows (a field of view cropping the
    skull ring, say).
    """
    from sdpm_cli.ingest.volume import load_candidate, load_volume_file

    if options is not None:  # the options as one value (what segment, batch and serve pass)
        series_uid, correct_tilt, resample_gaps = options.series_uid, options.correct_tilt, options.resample_gaps
        refuse_lossy, rules = options.refuse_lossy, options.rules
    rules = rules or IngestRules()
    if is_volume_file(path):
        if not Path(path).is_file():
            raise InputRejected(f"no such file: {path}")
        study = load_volume_file(Path(path), rules, skull_stripped)
        return _with_anatomy(study, rules) if anatomy else study
    root, uid = _resolve(path, series_uid, rules)
    opts = IngestOptions(series_uid=uid, correct_tilt=correct_tilt, resample_gaps=resample_gaps,
                         refuse_lossy=refuse_lossy, rules=rules)
    result, cands = _survey(root, opts)
    if skull_stripped:
        raise InputRejected("--skull-stripped is supported for volume-file input only (give the brain-extracted NIfTI, NRRD or MetaImage)")
    if result.refusal:
        raise InputRejected(result.refusal)
    chosen = result.chosen
    cand = next(c for c in cands if c.info is chosen.info)
    study = load_candidate(cand, opts, result)
    return _with_anatomy(study, rules, cand.headers) if anatomy else study


def _with_anatomy(study: Study, rules: IngestRules, headers=()) -> Study:
    """Refuse a non-head; add the out-of-domain warnings and flags (ingest.anatomy) to the study."""
    from sdpm_cli.ingest.anatomy import assess

    a = assess(study.image, rules, study.series.label, ages=[h.age for h in headers],
               body_parts=[h.body_part for h in headers], brain=study.brain)
    study.warnings.extend(a.warnings)
    study.domain = a.to_dict()
    return study
