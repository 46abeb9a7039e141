"""`sdpm evaluate` (placeholder: being built)."""

from sdpm_cli.cli import app, guarded
from sdpm_cli.errors import RuntimeFailure


@app.command("evaluate", help="(not yet available)")
@guarded
def evaluate_cmd() -> None:
    raise RuntimeFailure("sdpm evaluate is not implemented yet")
