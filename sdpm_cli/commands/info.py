"""`sdpm info`: what this installation can do; needs no GPU and no weights."""

from __future__ import annotations

import typer

from sdpm_cli.commands.app import app, guarded
from sdpm_cli.console import out
from sdpm_cli.environment import TRANSFER_SYNTAXES, devices, versions


@app.command("info", help="Versions, devices, supported DICOM transfer syntaxes and the default model.")
@guarded
def info_cmd(json_out: bool = typer.Option(False, "--json", help="Print the same as JSON.")) -> None:
    from sdpm_cli.model.onnx_net import load_graphs
    from sdpm_cli.model.registry import default_model_path

    model = default_model_path()
    graphs, why = load_graphs(model) if model else (None, "no model")
    data = {
        "versions": versions(),
        "devices": devices(),
        "transfer_syntaxes": TRANSFER_SYNTAXES,
        "default_model": str(model) if model else None,
        # what runs the network on the CPU (fp32): the model's ONNX companion (no torch import) or torch
        "network_on_cpu": f"onnxruntime ({graphs.paths['net'].name})" if graphs else f"torch ({why})",
        # what the model may be used for (its header's validation block; LoadedModel.validation)
        "default_model_caveat": _caveat(model, graphs),
    }
    if json_out:
        import json

        out.print_json(json.dumps(data))
        return
    from rich.table import Table

    t = Table(title="sdpm installation", show_header=False)
    for k, val in data["versions"].items():
        t.add_row(k, val)
    t.add_row("devices", "\n".join(data["devices"]))
    t.add_row("default model", data["default_model"] or "none installed")
    t.add_row("network on the CPU", data["network_on_cpu"])
    if data["default_model_caveat"]:
        t.add_row("caveat", data["default_model_caveat"])
    t.add_row("transfer syntaxes", "\n".join(f"{uid}  {name}" for uid, name in TRANSFER_SYNTAXES.items()))
    out.print(t)


def _caveat(model, graphs) -> str:
    """The default model's caveat, from its companion's copy of the header where it has one (no torch)."""
    from sdpm_cli.model.registry import Validation

    if model is None:
        return ""
    if graphs is not None:
        header = graphs.header
    else:
        from sdpm_cli.model.checkpoint import read_header

        header = read_header(model)
    return Validation.from_header(header).caveat
