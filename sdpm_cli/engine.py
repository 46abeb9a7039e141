"""One segmentation engine for every way a study arrives: `sdpm segment` (one or many), `sdpm serve`,
`sdpm evaluate --data` and the Python API.

The engine loads the model once, segments a study with one `SegmentOptions`, writes its outputs as
one transaction (`outputs.write`), and runs many studies under one failure policy (`isolated`):
a study that cannot be measured becomes a failed row with its exit code and one-line reason and the
run goes on; a model problem stops the run, since every later study would meet it too. Progress and
events reach the caller through callbacks; the engine never prints.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Optional, Sequence, TypeVar

from sdpm_cli.errors import EXIT_RUNTIME, ModelError, SdpmError, UsageError
from sdpm_cli.labels import CLASSES
from sdpm_cli.outputs.atomic import check_folder_writable, check_writable, temp_glob
from sdpm_cli.outputs.write import check_output_paths, write_outputs
from sdpm_cli.pipeline import LoadedModel, SegmentOptions, Segmentation, load_model, segment_study

T = TypeVar("T")

# dark_infarct_ml: the part of infarct_ml flagged as dark as CSF (postprocess.darkness: possibly old;
# empty where the study was not segmented in this run)
SUMMARY_FIELDS = ["study", "status", "exit_code", "error", "mask", "infarct_ml", "hemorrhage_ml", "dark_infarct_ml",
                  "runtime_s"]
MASK_NAME = "mask.nii.gz"


def isolated(work: Callable[[], T]) -> tuple[Optional[T], Optional[tuple[int, str]]]:
    """The failure policy of every multi-study run: (result, None), or (None, (exit code, reason)) for
    a study that failed. ModelError is raised (it stops the run); anything unexpected becomes a
    failure of this study with exit code 5, never a traceback."""
    try:
        return work(), None
    except ModelError:
        raise
    except SdpmError as exc:
        return None, (exc.exit_code, str(exc))
    except MemoryError:
        return None, (EXIT_RUNTIME, "out of memory")
    except Exception as exc:  # noqa: BLE001 - one study must not end a batch, a server or an evaluation
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return None, (EXIT_RUNTIME, f"unexpected {type(exc).__name__}: {msg}")


@dataclass(frozen=True)
class StudyJob:
    """One study to run: its input, a name for its row, and where each output goes (`mask` required)."""

    name: str
    study: Path
    outputs: Mapping[str, Path]

    @property
    def folder(self) -> Path:
        return Path(self.outputs["mask"]).parent


@dataclass
class StudyOutcome:
    """What became of one study: its summary row, a console line, and (when it ran) its segmentation."""

    name: str
    status: str  # ok | failed | skipped
    exit_code: int = 0
    error: str = ""
    outputs: Mapping[str, Path] = field(default_factory=dict)
    volumes_ml: dict[str, float] = field(default_factory=dict)
    runtime_s: float = 0.0
    line: str = ""
    segmentation: Optional[Segmentation] = None
    dark_infarct_ml: Optional[float] = None  # infarct mL flagged as dark as CSF (None: not segmented in this run)

    def row(self) -> dict:
        return {"study": self.name, "status": self.status, "exit_code": self.exit_code, "error": self.error,
                "mask": str(self.outputs.get("mask", "")) if self.status != "failed" else "",
                **{f"{n}_ml": round(v, 3) for n, v in self.volumes_ml.items()},
                "dark_infarct_ml": "" if self.dark_infarct_ml is None else round(self.dark_infarct_ml, 3),
                "runtime_s": round(self.runtime_s, 2)}


def volume_line(seg: Segmentation) -> str:
    """The volumes as one console line ("infarct 0.00 mL, hemorrhage 12.31 mL (95% interval ...)")."""
    from sdpm_cli.outputs.preview import volume_text

    return ", ".join(f"{n} {volume_text(v, digits=2, long=True)}" for n, v in seg.volumes.items())


class Engine:
    """A model loaded once, and the options every study is segmented with."""

    def __init__(self, model: "LoadedModel | str | Path | None" = None, *, device: str = "auto",
                 options: SegmentOptions = SegmentOptions()):
        options.check()  # usage errors before the model is loaded
        self.options = options
        if isinstance(model, LoadedModel):
            self.model, self.warnings = model, []
        else:
            # fp32 opens the model through its ONNX companion where it has one (torch only when needed)
            self.model, self.warnings = load_model(model, device, graphs=options.precision == "fp32")

    def segment(self, study, progress: Optional[Callable[[int, int], None]] = None, **changes) -> Segmentation:
        """Segment one study (a path or a loaded Study); `changes` replace SegmentOptions fields."""
        return segment_study(study, model=self.model, options=self.options, progress=progress, **changes)

    def run_study(self, job: StudyJob, *, replace: bool = False, include_phi: bool = False,
                  progress: Optional[Callable[[int, int], None]] = None) -> StudyOutcome:
        """Segment `job.study` and write its outputs as one transaction (raises on failure)."""
        t0 = time.perf_counter()
        check_output_paths(job.outputs, study=job.study)
        for p in job.outputs.values():
            check_writable(p, replace)
        seg = self.segment(job.study, progress=progress)
        job.folder.mkdir(parents=True, exist_ok=True)
        write_outputs(seg, job.outputs, include_phi=include_phi, force=replace)
        return StudyOutcome(name=job.name, status="ok", outputs=job.outputs, segmentation=seg,
                            volumes_ml={n: v.volume_ml for n, v in seg.volumes.items()},
                            dark_infarct_ml=float(sum(d["volume_ml"] for d in seg.dark_infarcts)),
                            runtime_s=time.perf_counter() - t0, line=volume_line(seg))

    def run_many(self, jobs: Sequence[StudyJob], *, replace: bool = False, resume: bool = False,
                 include_phi: bool = False,
                 on_outcome: Optional[Callable[[int, int, StudyOutcome], None]] = None) -> list[StudyOutcome]:
        """Run every job under the failure policy. `resume`: a job whose mask exists finished in an
        earlier run and is skipped; one without it is unfinished, its leftovers replaced."""
        outcomes: list[StudyOutcome] = []
        for k, job in enumerate(jobs, 1):
            if resume and Path(job.outputs["mask"]).exists():  # the mask is written last
                o = StudyOutcome(name=job.name, status="skipped", outputs=job.outputs,
                                 volumes_ml=finished_volumes(job.outputs), line="already done, skipped")
            else:
                t0 = time.perf_counter()

                def work(job=job) -> StudyOutcome:
                    if resume:
                        clear_unfinished(job.outputs)
                    return self.run_study(job, replace=replace or resume, include_phi=include_phi)

                o, failure = isolated(work)
                if failure is not None:
                    o = StudyOutcome(name=job.name, status="failed", exit_code=failure[0], error=failure[1],
                                     outputs=job.outputs, runtime_s=time.perf_counter() - t0,
                                     line=f"error: {failure[1]}")
            outcomes.append(o)
            if on_outcome is not None:
                on_outcome(k, len(jobs), o)
            o.segmentation = None  # a batch keeps rows, not every study's arrays
        return outcomes


# ------------------------------------------------------------------------------- planning a batch
def discover(studies: Sequence[Path], parent: Optional[Path]) -> list[Path]:
    """The studies given, plus every study folder or volume file directly under `parent`."""
    from sdpm_cli.ingest import is_study_file

    found = list(studies)
    if parent is not None:
        if not parent.is_dir():
            raise UsageError(f"--batch: not a folder: {parent}")
        found += sorted(p for p in parent.iterdir() if not p.name.startswith(".") and (p.is_dir() or is_study_file(p)))
    if not found:
        raise UsageError("no studies given")
    return found


def shard_of(items: Sequence[Path], shard: Optional[str]) -> list[Path]:
    """Shard i of n (`"i/n"`, 1-based) of `items`, for array jobs."""
    if not shard:
        return list(items)
    try:
        i, n = (int(v) for v in shard.split("/"))
        assert 1 <= i <= n
    except (ValueError, AssertionError):
        raise UsageError(f"--shard must be i/n with 1 <= i <= n, got '{shard}'") from None
    return [p for k, p in enumerate(items) if k % n == i - 1]


def study_outputs(folder: Path, file_names: Mapping[str, str]) -> dict[str, Path]:
    """A study's outputs in its own folder: the mask plus each requested kind under its file name."""
    return {"mask": folder / MASK_NAME, **{k: folder / name for k, name in file_names.items() if name}}


def plan_jobs(items: Sequence[Path], out_dir: Path, file_names: Mapping[str, str]) -> list[StudyJob]:
    """One job per study, each in `out_dir/<study name>/`; refuses (before any work) names that
    collide, outputs that are one file, and study folders that cannot be written."""
    from sdpm_cli.ingest import study_name

    names = [study_name(p) for p in items]
    if len(set(names)) != len(names):
        raise UsageError("two studies share a name; give distinct folder names")
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"--out-dir is not a folder: {out_dir}")
    jobs = [StudyJob(n, p, study_outputs(out_dir / n, file_names)) for n, p in zip(names, items)]
    if jobs:  # the same file names in every study folder
        check_output_paths(jobs[0].outputs, where=" (in each study folder)")
    for j in jobs:  # a study folder left read-only by an earlier run
        check_folder_writable(j.outputs["mask"])
    return jobs


def finished_volumes(outputs: Mapping[str, Path]) -> dict[str, float]:
    """The volumes (mL) of a study finished in an earlier run: from its report when there is one, else
    measured on its mask with the project's voxel volume."""
    report = outputs.get("report")
    if report is not None and Path(report).exists():
        try:
            vols = json.loads(Path(report).read_text())["volumes"]
            return {name: float(vols[name]["volume_ml"]) for name in CLASSES.values()}
        except (ValueError, KeyError, TypeError, OSError):
            pass  # an unreadable report: measure the mask instead
    import numpy as np
    import SimpleITK as sitk

    from sdpm_cli.labels import voxel_volume_ml

    try:
        mask = sitk.ReadImage(str(outputs["mask"]))
    except RuntimeError:
        return {}
    arr, voxel_ml = sitk.GetArrayViewFromImage(mask), voxel_volume_ml(mask)
    return {name: int(np.count_nonzero(arr == label)) * voxel_ml for label, name in CLASSES.items()}


def clear_unfinished(outputs: Mapping[str, Path]) -> None:
    """A study without its mask is unfinished: remove the temporaries a killed run left for its
    outputs (its stale outputs themselves are then rewritten; nothing else in the folder is touched)."""
    for p in outputs.values():
        for tmp in Path(p).parent.glob(temp_glob(Path(p))):
            tmp.unlink(missing_ok=True)


def summary_csv(outcomes: Sequence[StudyOutcome]) -> str:
    """The batch summary table (one row per study)."""
    import csv
    import io

    buf = io.StringIO()
    wr = csv.DictWriter(buf, fieldnames=SUMMARY_FIELDS, extrasaction="ignore")
    wr.writeheader()
    wr.writerows(o.row() for o in outcomes)
    return buf.getvalue()
