"""`sdpm export-onnx MODEL`: write the ONNX companion that lets `out` run without torch (model.onnx_out)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from sdpm_cli.commands import options as opt
from sdpm_cli.commands.app import app, guarded
from sdpm_cli.console import info


@app.command("export-onnx", help="Write MODEL's ONNX companion (MODEL.out.onnx): `out` on the CPU then runs through ONNX "
                                 "Runtime without importing torch (a faster start, the same masks). Re-run it after "
                                 "retraining or rewriting a checkpoint's header; a stale companion is ignored.")
@guarded
def export_cmd(
    model: Path = typer.Argument(..., exists=True, dir_okay=False, help="A checkpoint (.pt) written by `sdpm train`."),
    out: Optional[Path] = typer.Option(None, "--out", help="Where to write it [MODEL with .out.onnx]; `out` finds it "
                                                          "only beside the checkpoint."),
    force: bool = opt.force(),
) -> None:
    from sdpm_cli.model.onnx_out import export_out

    path = export_out(model, out, force=force)
    info(f"wrote {path} (checked against the checkpoint's network)")
