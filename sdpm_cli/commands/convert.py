"""`sdpm convert` (placeholder: being built)."""

from sdpm_cli.cli import app, guarded
from sdpm_cli.errors import RuntimeFailure


@app.command("convert", help="(not yet available)")
@guarded
def convert_cmd() -> None:
    raise RuntimeFailure("sdpm convert is not implemented yet")
