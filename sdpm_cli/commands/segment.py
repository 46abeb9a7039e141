"""`sdpm segment` (placeholder: being built)."""

from sdpm_cli.cli import app, guarded
from sdpm_cli.errors import RuntimeFailure


@app.command("segment", help="(not yet available)")
@guarded
def segment_cmd() -> None:
    raise RuntimeFailure("sdpm segment is not implemented yet")
