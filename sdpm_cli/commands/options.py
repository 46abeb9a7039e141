"""Options that several commands share, defined once: flag names, defaults and help.

Each is a function returning a fresh `typer.Option` (one OptionInfo per use), so a command writes
`model: Optional[Path] = opt.model()`. Ingest options reach `load_study` unchanged via `ingest_kwargs`.
"""

from __future__ import annotations

from typing import Optional

import typer

from sdpm_cli.modes import DEFAULT_MODE, MODES


def mode():
    return typer.Option(DEFAULT_MODE, "--mode", "-m", help=" | ".join(MODES) + f" (default {DEFAULT_MODE})")


def preset():
    return typer.Option("fast", "--preset", help="fast (measured default) | paper (the paper's settings; slow)")


def model():
    return typer.Option(None, "--model", help="Checkpoint (default: the shipped model).")


def device():
    return typer.Option("auto", "--device", help="auto | cpu | cuda | cuda:N (CUDA falls back to CPU with a warning)")


def seed():
    return typer.Option(0, "--seed", help="Seed for the diffusion samples (bit-identical masks on CPU).")


def force():
    return typer.Option(False, "--force", help="Overwrite existing outputs.")


def quiet():
    return typer.Option(False, "--quiet", "-q", help="No progress bar, fewer messages.")


def series():
    return typer.Option(None, "--series", help="SeriesInstanceUID to use instead of the automatic choice.")


def correct_tilt():
    return typer.Option(False, "--correct-tilt", help="Resample a gantry-tilted series to an untilted grid (with a warning) instead of refusing it.")


def resample_gaps():
    return typer.Option(False, "--resample-gaps", help="Resample missing slices / uneven spacing to a regular grid (with a warning) instead of refusing it.")


def refuse_lossy():
    return typer.Option(False, "--refuse-lossy", help="Refuse lossy-compressed pixel data (default: warn).")


def no_lesion_filter():
    return typer.Option(False, "--no-lesion-filter", help="Keep every predicted lesion (skip the model's size/extent filter).")


def ingest_options(series: Optional[str] = None, correct_tilt: bool = False, resample_gaps: bool = False,
                   refuse_lossy: bool = False) -> "IngestOptions":  # noqa: F821
    """The ingest flags as the library's IngestOptions."""
    from sdpm_cli.ingest import IngestOptions

    return IngestOptions(series_uid=series, correct_tilt=correct_tilt, resample_gaps=resample_gaps, refuse_lossy=refuse_lossy)


def threads():
    return typer.Option(0, "--threads", min=0, help="CPU threads for the network and the slice-by-slice stages; "
                                                    "0 = all cores (or OMP_NUM_THREADS where set).")


def apply_threads(n: int) -> None:
    """Bound torch's CPU threads and the slice-parallel stages (a pipeline sharing a node runs
    several studies side by side)."""
    if n > 0:
        import sys

        from sdpm_cli.threads import set_cpu_threads

        set_cpu_threads(n)  # torch reads it when a model is loaded on it (pipeline._load_torch)
        if "torch" in sys.modules:  # already imported: bound it now
            sys.modules["torch"].set_num_threads(n)


def start_run(mode: str, threads: int) -> None:
    """What every segmenting command checks and sets first: a known mode, then the thread bound."""
    from sdpm_cli.errors import UsageError

    if mode not in MODES:
        raise UsageError(f"unknown mode '{mode}' (choose from {', '.join(MODES)})")
    apply_threads(threads)


def orientation():
    return typer.Option("anatomy", "--orientation",
                        help="anatomy (default): a head lying at 90 degrees to its header's orientation (research data that "
                             "lost it) is shown to the model upright, with a warning | header: believe the header")


def precision():
    return typer.Option("fp32", "--precision", help="fp32 (as trained; default) | bf16 (network in bfloat16: ~2x faster "
                                                    "on CPUs with AMX and on GPUs; masks differ by a few boundary voxels)")
