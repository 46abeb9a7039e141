"""`sdpm series` (placeholder: being built)."""

from sdpm_cli.cli import app, guarded
from sdpm_cli.errors import RuntimeFailure


@app.command("series", help="(not yet available)")
@guarded
def series_cmd() -> None:
    raise RuntimeFailure("sdpm series is not implemented yet")
