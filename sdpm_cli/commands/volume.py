"""`sdpm volume` (placeholder: being built)."""

from sdpm_cli.cli import app, guarded
from sdpm_cli.errors import RuntimeFailure


@app.command("volume", help="(not yet available)")
@guarded
def volume_cmd() -> None:
    raise RuntimeFailure("sdpm volume is not implemented yet")
