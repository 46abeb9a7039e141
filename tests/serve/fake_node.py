"""`sdpm serve` with the fake processor, as a subprocess the tests can SIGKILL and restart.
Usage: python tests/serve/fake_node.py OUT_DIR PORT [FORWARD_AET@HOST:PORT] (env: IDLE, FAKE_*)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from serve.nodekit import processor_from_env  # noqa: E402

from sdpm_cli.serve.config import ServeConfig, parse_peer  # noqa: E402
from sdpm_cli.serve.events import EventLog  # noqa: E402
from sdpm_cli.serve.server import Server, run_until_signalled  # noqa: E402


def main() -> int:
    out, port = Path(sys.argv[1]), int(sys.argv[2])
    fwd = parse_peer(sys.argv[3]) if len(sys.argv) > 3 else None
    cfg = ServeConfig(out_dir=out, port=port, bind="127.0.0.1", forward=fwd, idle_s=float(os.environ.get("IDLE", "1")),
                      json_log=out.parent / "events.jsonl", forward_attempts=int(os.environ.get("ATTEMPTS", "3")),
                      forward_backoff_s=float(os.environ.get("BACKOFF", "0.2")), forward_timeout_s=5)
    log = EventLog(cfg.json_log, echo=lambda line: print(line, file=sys.stderr, flush=True))
    return run_until_signalled(Server(cfg, processor_from_env(), log))


if __name__ == "__main__":
    sys.exit(main())
