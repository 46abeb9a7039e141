"""`sdpm train` (placeholder: being built)."""

from sdpm_cli.cli import app, guarded
from sdpm_cli.errors import RuntimeFailure


@app.command("train", help="(not yet available)")
@guarded
def train_cmd() -> None:
    raise RuntimeFailure("sdpm train is not implemented yet")
