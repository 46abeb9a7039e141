"""`sdpm qc` (placeholder: being built)."""

from sdpm_cli.cli import app, guarded
from sdpm_cli.errors import RuntimeFailure


@app.command("qc", help="(not yet available)")
@guarded
def qc_cmd() -> None:
    raise RuntimeFailure("sdpm qc is not implemented yet")
