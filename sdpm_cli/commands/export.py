"""`sdpm export-onnx MODEL`: write the ONNX companion that lets the network run without torch (model.onnx_net)."""

from __future__ import annotations

from pathlib import Path

import typer

from sdpm_cli.commands import options as opt
from sdpm_cli.commands.app import app, guarded
from sdpm_cli.console import info


@app.command("export-onnx", help="Write MODEL's ONNX companion beside it (MODEL.net.onnx, MODEL.eps.onnx): on the CPU "
                                 "every mode then runs its network through ONNX Runtime without importing torch (a "
                                 "faster start, the same masks). Re-run it after retraining or rewriting a "
                                 "checkpoint's header; a stale companion is ignored.")
@guarded
def export_cmd(
    model: Path = typer.Argument(..., exists=True, dir_okay=False, help="A checkpoint (.pt) written by `sdpm train`."),
    force: bool = opt.force(),
) -> None:
    from sdpm_cli.model.onnx_net import export_graphs

    paths = export_graphs(model, force=force)
    info("wrote " + ", ".join(str(p) for p in paths.values()) + " (checked against the checkpoint's network)")
