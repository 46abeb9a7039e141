"""A data set of synthetic studies in the nnU-Net raw layout, with a manifest of the truth.

    OUT/dataset.json                 nnU-Net v2 description (when NIfTI images are written)
    OUT/imagesTr/synth_0000_0000.nii.gz   OUT/labelsTr/synth_0000.nii.gz
    OUT/imagesTs/...                 OUT/labelsTs/...
    OUT/dicom/synth_0000/IM0001.dcm  (format dicom or both)
    OUT/manifest.json, manifest.csv  per case: seed, split, protocol, lesions, true volume_ml per class

Case i is generated from case_seed(seed, i) only, so any subset, order or number of workers gives the
same files. The whole folder is built beside OUT and renamed into place at the end: an interrupted run
leaves no half-written data set.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Callable, Union

from sdpm_cli.errors import UsageError
from sdpm_cli.labels import CLASSES
from sdpm_cli.outputs.atomic import write_json, write_text
from sdpm_cli.synth.config import FORMAT_CHOICES, LESION_CHOICES, SynthConfig, case_seed

Progress = Union[bool, Callable[[int, int], None]]


def is_test_case(index: int, test_fraction: float) -> bool:
    """Spread test cases evenly: exactly floor(n * test_fraction) of the first n cases, for every n."""
    return int((index + 1) * test_fraction) > int(index * test_fraction)


def case_id(index: int) -> str:
    return f"synth_{index:04d}"


def _make_case(index: int, seed: int, cfg: SynthConfig, fmt: str, test_fraction: float, root: str,
               threads: int | None = None) -> dict:
    """Generate and write one case under root; returns its manifest entry (runs in a worker process)."""
    import SimpleITK as sitk

    from sdpm_cli.synth.generate import generate_case
    from sdpm_cli.synth.writers import write_dicom_series, write_nifti

    if threads:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)
    root_p = Path(root)
    cid = case_id(index)
    cs = case_seed(seed, index)
    case = generate_case(cs, cfg)
    split = "test" if is_test_case(index, test_fraction) else "train"
    sub = "Ts" if split == "test" else "Tr"
    entry: dict = {"id": cid, "index": index, "case_seed": cs, "split": split}
    entry["label"] = f"labels{sub}/{cid}.nii.gz"
    write_nifti(case.label, root_p / entry["label"])
    if fmt in ("nifti", "both"):
        entry["image"] = f"images{sub}/{cid}_0000.nii.gz"
        write_nifti(case.image, root_p / entry["image"])
    if fmt in ("dicom", "both"):
        entry["dicom"] = f"dicom/{cid}"
        write_dicom_series(case.image, case.meta, root_p / entry["dicom"], case_number=index + 1)
    meta = dict(case.meta)
    meta.pop("seed", None)
    entry.update(meta)
    return entry


def _dataset_json(entries: list[dict], seed: int, fmt: str, family: str = "analytic") -> dict:
    atlas = family == "atlas"
    return {
        "name": "SDPMSynthAtlas" if atlas else "SDPMSynth",
        "description": (f"sdpm synth phantoms, family B (MNI ICBM152 atlas anatomy; held out from training) (seed {seed}): "
                        "head NCCT with infarct/hemorrhage truth" if atlas else
                        f"sdpm synth phantoms (seed {seed}): head NCCT with infarct/hemorrhage truth"),
        "channel_names": {"0": "CT"},
        "labels": {"background": 0, **{name: c for c, name in CLASSES.items()}},
        "numTraining": sum(e["split"] == "train" for e in entries),
        "numTest": sum(e["split"] == "test" for e in entries),
        "file_ending": ".nii.gz",
        "overwrite_image_reader_writer": "SimpleITKIO",
        "licence": "synthetic data, no patient information (CC0)" + (
            "; anatomy derived from the ICBM 2009a template: Copyright (C) 1993-2009 Louis Collins, McConnell Brain "
            "Imaging Centre, Montreal Neurological Institute, McGill University" if atlas else ""),
    }


def _csv(entries: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    names = list(CLASSES.values())
    w.writerow(["id", "split", "case_seed", "protocol", "slice_thickness_mm", "n_slices", "fov_mm",
                "noise_sigma_hu", *[f"{n}_ml" for n in names], "lesions"])
    for e in entries:
        p = e["protocol"]
        w.writerow([e["id"], e["split"], e["case_seed"], p["name"], p["slice_thickness_mm"], p["n_slices"],
                     p["fov_mm"], p["noise_sigma_hu"], *[e["volume_ml"][n] for n in names],
                     ";".join(f"{les['kind']}:{les['volume_ml']}" for les in e["lesions"])])
    return buf.getvalue()


def _check_out(out: Path, force: bool) -> None:
    if not out.exists():
        return
    if not out.is_dir():
        raise UsageError(f"output exists and is not a folder: {out}")
    if not any(out.iterdir()):
        return
    if not force:
        raise UsageError(f"output folder is not empty: {out} (use --force to replace an earlier sdpm synth data set)")
    try:
        ours = json.loads((out / "manifest.json").read_text()).get("generator", "").startswith("sdpm synth")
    except (OSError, ValueError):
        ours = False
    if not ours:
        raise UsageError(f"refusing to replace {out}: it is not an sdpm synth data set (no manifest.json)")


def write_dataset(out_dir: str | os.PathLike, n_cases: int, seed: int, lesion: str = "both", fmt: str = "nifti",
                  test_fraction: float = 0.2, progress: Progress = True, cfg: SynthConfig | None = None,
                  workers: int = 1, force: bool = False) -> dict:
    """Generate n_cases studies into out_dir; returns the manifest (also written as manifest.json)."""
    if n_cases < 1:
        raise UsageError("--cases must be at least 1")
    if lesion not in LESION_CHOICES:
        raise UsageError(f"unknown lesion choice '{lesion}' (choose from {', '.join(LESION_CHOICES)})")
    if fmt not in FORMAT_CHOICES:
        raise UsageError(f"unknown format '{fmt}' (choose from {', '.join(FORMAT_CHOICES)})")
    if not 0.0 <= test_fraction <= 1.0:
        raise UsageError("test fraction must be in [0, 1] (1 = a held-out test set only)")
    cfg = replace(cfg or SynthConfig(), lesion=lesion)
    out = Path(out_dir)
    _check_out(out, force)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".part", dir=out.parent))
    entries: list[dict] = []
    try:
        with _progress(progress, n_cases) as tick:
            if workers <= 1:
                for i in range(n_cases):
                    entries.append(_make_case(i, seed, cfg, fmt, test_fraction, str(staging)))
                    tick()
            else:
                import multiprocessing as mp
                from concurrent.futures import ProcessPoolExecutor, as_completed

                with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as ex:
                    futs = [ex.submit(_make_case, i, seed, cfg, fmt, test_fraction, str(staging), 1)
                            for i in range(n_cases)]
                    for f in as_completed(futs):
                        entries.append(f.result())
                        tick()
        entries.sort(key=lambda e: e["index"])
        manifest = {
            "generator": entries[0]["generator"],
            "seed": int(seed),
            "family": cfg.family,
            "n_cases": n_cases,
            "lesion": lesion,
            "format": fmt,
            "test_fraction": test_fraction,
            "classes": {str(c): n for c, n in CLASSES.items()},
            "label_rule": entries[0]["label_rule"],
            "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.__dict__.items()},
            "cases": entries,
        }
        if fmt in ("nifti", "both"):
            write_json(staging / "dataset.json", _dataset_json(entries, seed, fmt, cfg.family))
        write_text(staging / "manifest.csv", _csv(entries))
        write_json(staging / "manifest.json", manifest)
        if out.exists():
            trash = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
            os.replace(out, trash / "old")
            os.replace(staging, out)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(staging, out)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return manifest


class _progress:
    """Context manager giving a tick() callback: a rich bar on stderr, a user callback, or nothing."""

    def __init__(self, progress: Progress, total: int):
        self.progress, self.total, self.done, self.bar = progress, total, 0, None

    def __enter__(self):
        if self.progress is True:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn, TimeRemainingColumn

            self.bar = Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                                TimeElapsedColumn(), TimeRemainingColumn(), console=Console(stderr=True), transient=False)
            self.bar.__enter__()
            self.task = self.bar.add_task("synth", total=self.total)
        return self.tick

    def tick(self) -> None:
        self.done += 1
        if self.bar is not None:
            self.bar.advance(self.task)
        elif callable(self.progress):
            self.progress(self.done, self.total)

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.__exit__(*exc)
        return False
