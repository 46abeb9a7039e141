"""`sdpm synth`: synthetic head NCCT studies with infarct/hemorrhage truth, in the nnU-Net raw layout."""

from __future__ import annotations

import time
from pathlib import Path
from typing import List, Optional

import typer

from sdpm_cli.commands.app import app, guarded
from sdpm_cli.console import info, out
from sdpm_cli.errors import UsageError


@app.command("synth", help="Generate synthetic head NCCT studies with exact lesion labels (1 infarct, 2 hemorrhage).")
@guarded
def synth_cmd(
    out_dir: Path = typer.Argument(..., help="Output folder (nnU-Net raw layout + manifest.json)."),
    cases: int = typer.Option(10, "--cases", "-n", help="Number of studies."),
    seed: int = typer.Option(0, "--seed", help="Data set seed; case i depends only on (seed, i)."),
    lesion: str = typer.Option("both", "--lesion", help="both | infarct | hemorrhage | none"),
    family: str = typer.Option("analytic", "--family", help="Phantom family: analytic (family A, analytic anatomy; the training generator) | atlas (family B, MNI ICBM152 atlas anatomy, needs nilearn; held out, for measuring generalisation)."),
    fmt: str = typer.Option("nifti", "--format", help="nifti | dicom | both"),
    thickness: Optional[List[float]] = typer.Option(None, "--thickness", help="Slice thickness in mm (repeat for a mix; default 5, 2.5 and 1 mm)."),
    matrix: int = typer.Option(512, "--matrix", help="In-plane matrix (512 clinical; 256 is four times cheaper)."),
    domain: str = typer.Option("randomised", "--domain", help="randomised (wide nuisance ranges, for training) | clinical (typical adult NCCT values)."),
    shapeless: float = typer.Option(0.0, "--shapeless-infarcts", help="Family A: share of territorial infarcts drawn as blobs of no vascular shape, anywhere in the parenchyma (shape randomisation; 0 = the generator as before)."),
    test_fraction: float = typer.Option(0.2, "--test-fraction", help="Share of cases in imagesTs/labelsTs."),
    workers: int = typer.Option(1, "--workers", "-j", help="Parallel processes (same output for any value)."),
    force: bool = typer.Option(False, "--force", help="Replace an earlier sdpm synth data set in OUT."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    from sdpm_cli.synth import SynthConfig
    from sdpm_cli.synth.config import DOMAIN_CHOICES, FAMILY_CHOICES
    from sdpm_cli.synth.dataset import write_dataset

    if domain not in DOMAIN_CHOICES:
        raise UsageError(f"--domain must be one of {', '.join(DOMAIN_CHOICES)}")
    if family not in FAMILY_CHOICES:
        raise UsageError(f"unknown family '{family}' (choose from {', '.join(FAMILY_CHOICES)})")
    if not 0.0 <= shapeless <= 1.0:
        raise UsageError("--shapeless-infarcts must lie in [0, 1]")
    if shapeless > 0 and family != "analytic":
        raise UsageError("--shapeless-infarcts belongs to family A (--family analytic)")
    if family == "atlas":
        from sdpm_cli.synth.atlas.template import atlas_dir

        atlas_dir()  # refuses with a one-line reason when nilearn (the atlas) is missing
    if workers < 1:
        raise UsageError("--workers must be at least 1")
    kw = {}
    if thickness:
        if any(t <= 0 or t > 10 for t in thickness):
            raise UsageError("--thickness must be in (0, 10] mm")
        kw = {"thicknesses_mm": tuple(thickness), "thickness_weights": (1.0,) * len(thickness)}
    if matrix < 64 or matrix % 2:
        raise UsageError("--matrix must be an even number >= 64")
    cfg = SynthConfig(matrix=matrix, family=family, domain=domain, shapeless_infarct_prob=shapeless, **kw)
    t0 = time.perf_counter()
    man = write_dataset(out_dir, cases, seed, lesion=lesion, fmt=fmt, test_fraction=test_fraction,
                        progress=not quiet, cfg=cfg, workers=workers, force=force)
    dt = time.perf_counter() - t0
    n_les = {k: sum(1 for c in man["cases"] if c["volume_ml"][k] > 0) for k in ("infarct", "hemorrhage")}
    info(f"{cases} case(s) in {dt:.1f} s ({cases / dt:.2f} cases/s)")
    out.print(f"wrote {out_dir}: {cases} case(s), {sum(c['split'] == 'test' for c in man['cases'])} test, "
              f"{n_les['infarct']} with infarct, {n_les['hemorrhage']} with hemorrhage; truth in {Path(out_dir) / 'manifest.json'}")
