"""`sdpm synth` (placeholder: being built)."""

from sdpm_cli.cli import app, guarded
from sdpm_cli.errors import RuntimeFailure


@app.command("synth", help="(not yet available)")
@guarded
def synth_cmd() -> None:
    raise RuntimeFailure("sdpm synth is not implemented yet")
