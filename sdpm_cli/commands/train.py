"""`sdpm train DATA --out model.pt`: train (or continue training) a model on labelled CT.

Multi-GPU / multi-node: `torchrun --nproc_per_node=G -m sdpm_cli train DATA --out model.pt`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer

from sdpm_cli.commands import options as opt
from sdpm_cli.commands.app import app, guarded
from sdpm_cli.console import err, info, out, warn
from sdpm_cli.errors import UsageError


def _fmt_s(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def scaled_widths(width: int) -> dict:
    """The default architecture with every level's channels scaled so the first level has `width`."""
    from sdpm_cli.errors import UsageError
    from sdpm_cli.model.network import NetConfig

    if width < 1:
        raise UsageError("--width must be a positive number of channels")
    d = NetConfig()
    f = width / d.widths[0]
    return {"widths": [max(1, round(w * f)) for w in d.widths],
            "decoder_widths": [max(1, round(w * f)) for w in d.dec_widths]}


@app.command("train", help="Train a model on an nnU-Net raw folder (imagesTr/labelsTr) or a CSV of image,label pairs.")
@guarded
def train_cmd(
    data: Path = typer.Argument(..., help="nnU-Net raw folder or CSV (columns image,label; paths relative to the CSV)."),
    out_path: Path = typer.Option(..., "--out", "-o", help="The trained model checkpoint (EMA weights)."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Optimizer steps [6000]."),
    batch: Optional[int] = typer.Option(None, "--batch", help="Patches per step per process [16]."),
    patch: Optional[int] = typer.Option(None, "--patch", help="Patch side on the model grid; 0 = whole slices [96]."),
    lr: Optional[float] = typer.Option(None, "--lr", help="Initial learning rate of the poly schedule [1e-3; the paper: 1e-4]."),
    lr_min: Optional[float] = typer.Option(None, "--lr-min", help="Final learning rate [6e-5]."),
    ema: Optional[float] = typer.Option(None, "--ema", help="EMA decay of the saved weights [0.999]."),
    clip: Optional[float] = typer.Option(None, "--clip", help="Gradient-norm clip; 0 = off [1.0]."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed of every random stream [0]."),
    width: Optional[int] = typer.Option(None, "--width", help="First-level channels; all levels scale with it [16]. With --init: the init model is grown to this width exactly (its outputs unchanged; new channels start silent)."),
    rotate_deg: Optional[float] = typer.Option(None, "--rotate-deg", help="In-plane rotation augmentation, uniform in +-DEG [15]; 180 = any orientation (heads stored rotated in their image)."),
    mirror_channel: bool = typer.Option(False, "--mirror-channel", help="Give the network the slice mirrored across the head's midline as a second input (with --init: added to that model, starting from zero weights)."),
    context_slices: Optional[int] = typer.Option(None, "--context-slices", min=0, max=4, help="Give the network the K model slices below and above each slice as further inputs (2.5-D; with --init: added to that model, starting from zero weights) [0]."),
    lesion_fraction: Optional[float] = typer.Option(None, "--lesion-fraction", help="Share of patches centred on lesions [0.5]."),
    val_fraction: Optional[float] = typer.Option(None, "--val-fraction", help="Held-out share of cases for validation Dice [0.1]."),
    val_every: Optional[int] = typer.Option(None, "--val-every", help="Steps between validations; 0 = at the end only [500]."),
    ckpt_every: Optional[int] = typer.Option(None, "--ckpt-every", help="Steps between training-state checkpoints; 0 = none [500]."),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", help="Training-state file [OUT.state.pt]."),
    init: Optional[Path] = typer.Option(None, "--init", help="Fine-tune: start from this model's weights (its architecture and preprocessing)."),
    teacher: Optional[Path] = typer.Option(None, "--teacher", help="Train the classes of --teacher-classes towards this model's `out` answer instead of the truth (hold them while the others learn)."),
    teacher_classes: Optional[str] = typer.Option(None, "--teacher-classes", help="Comma-separated classes whose labels come from --teacher (e.g. infarct)."),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Continue exactly from a training-state file."),
    stop_after: Optional[int] = typer.Option(None, "--stop-after", help="Stop after this many total steps (checkpoint; resume later)."),
    device: Optional[str] = typer.Option(None, "--device", help="auto | cpu | cuda | cuda:N [auto]."),
    amp: Optional[str] = typer.Option(None, "--amp", help="Mixed precision on CUDA: auto | bf16 | fp16 | off [auto]."),
    threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads; 0 = all cores [0]."),
    cache: Optional[Path] = typer.Option(None, "--cache", help="Folder to cache prepared cases (cheap restarts)."),
    log: Optional[Path] = typer.Option(None, "--log", help="JSON-lines log of losses and validation Dice."),
    no_progress: bool = typer.Option(False, "--no-progress", help="No progress bar (a line every 5% instead)."),
    force: bool = opt.force(),
) -> None:
    from sdpm_cli.train import TrainConfig, train
    from sdpm_cli.train.ddp import env_world
    from sdpm_cli.train.loop import _load_state, apply_init, teacher_settings, with_inputs

    base = TrainConfig.from_dict(_load_state(resume)["config"]) if resume is not None else TrainConfig()
    given = {
        "steps": steps, "batch": batch, "patch": patch, "lr_init": lr, "lr_min": lr_min, "ema_decay": ema,
        "grad_clip": clip, "seed": seed, "lesion_fraction": lesion_fraction, "val_fraction": val_fraction,
        "val_every": val_every, "ckpt_every": ckpt_every, "device": device, "amp": amp, "threads": threads,
    }
    cfg = base.to_dict()
    cfg.update({k: v for k, v in given.items() if v is not None})
    cfg["data"], cfg["out"] = str(data), str(out_path)
    cfg["checkpoint"] = str(checkpoint) if checkpoint else base.checkpoint
    cfg["log"] = str(log) if log else ""
    cfg["cache"] = str(cache) if cache else ""
    if width is not None:
        cfg["net"] = {**cfg["net"], **scaled_widths(width)}
    if rotate_deg is not None:
        cfg["augment"] = {**cfg["augment"], "rotate_deg": float(rotate_deg)}
    if init is not None:
        if resume is not None:
            raise UsageError("--init starts a new run; --resume continues one (its init is in the checkpoint)")
        cfg["init"] = str(init)
    if teacher is not None or teacher_classes is not None:
        if resume is not None:
            raise UsageError("--teacher starts a new run; --resume continues one (its teacher is in the checkpoint)")
        cfg.update(teacher_settings(teacher, teacher_classes))
    config = apply_init(TrainConfig.from_dict(with_inputs(cfg, mirror_channel, context_slices or 0)))

    rank = env_world()[0]
    main = rank == 0
    show_bar = main and not no_progress and err.is_terminal
    say = info if main else (lambda msg: None)
    start = time.perf_counter()
    next_line = [0]

    def line_progress(step: int, total: int, rec: dict) -> None:
        if step >= next_line[0] or step == total:
            next_line[0] = step + max(1, total // 20)
            el = time.perf_counter() - start
            done = step - first_step[0]
            eta = el / max(done, 1) * (total - step)
            say(f"step {step}/{total}  loss {rec['total']:.4f}  lr {rec['lr']:.2e}  elapsed {_fmt_s(el)}  eta {_fmt_s(eta)}")

    first_step = [None]

    def remember_first(step: int) -> None:
        if first_step[0] is None:
            first_step[0] = step - 1

    if show_bar:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        with Progress(TextColumn("training"), BarColumn(), MofNCompleteColumn(), TextColumn("loss {task.fields[loss]}"),
                      TextColumn("lr {task.fields[lr]}"), TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
                      console=err, transient=False) as bar:
            task = bar.add_task("train", total=config.steps, loss="-", lr="-")

            def on_step(step: int, total: int, rec: dict) -> None:
                remember_first(step)
                bar.update(task, completed=step, loss=f"{rec['total']:.4f}", lr=f"{rec['lr']:.1e}")

            def on_event(msg: str) -> None:
                if msg.startswith("resuming at step"):
                    bar.update(task, completed=int(msg.split()[3].split("/")[0]))
                bar.console.print(msg, markup=False, highlight=False)

            result = train(config, resume=resume, force=force, stop_after=stop_after, on_step=on_step, on_event=on_event)
    else:
        def on_step(step: int, total: int, rec: dict) -> None:
            remember_first(step)
            line_progress(step, total, rec)

        result = train(config, resume=resume, force=force, stop_after=stop_after, on_step=on_step,
                       on_event=lambda msg: None if msg.startswith("preparing case") else say(msg))
    if not main:
        return
    for msg in result.warnings:
        warn(msg)
    if result.finished:
        v = result.val[-1] if result.val else None
        dice = f", validation Dice {v['dice_mean']:.3f}" if v and v.get("dice_mean") is not None else ""
        out.print(f"model written to {result.out} ({result.steps_done} steps, {result.wall_s:.0f} s{dice})", markup=False)
    else:
        out.print(f"stopped at step {result.steps_done}/{config.steps}; continue with --resume {result.state}", markup=False)
