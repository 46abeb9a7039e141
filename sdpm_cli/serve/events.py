"""The node's event log: one line per event on the console and, optionally, one JSON object per line
in a file. Events carry study keys (hashes), counts, durations and DICOM statuses only: the callers
never pass patient names, IDs, birth dates, accession numbers or raw UIDs, and `key` hashes UIDs."""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from pathlib import Path
from typing import Callable, Optional

KEY_CHARS = 16


def key(uid: str) -> str:
    """A short, non-identifying key for a UID (study folders, event fields, file names)."""
    return hashlib.sha256(str(uid).strip().encode()).hexdigest()[:KEY_CHARS]


def _text(value: object) -> str:
    s = f"{value:.3f}" if isinstance(value, float) else str(value)
    return s if s and " " not in s else json.dumps(s)


class EventLog:
    """Thread-safe: SCP association threads and the worker log side by side."""

    def __init__(self, json_path: Optional[Path] = None, echo: Optional[Callable[[str], None]] = None) -> None:
        self._lock = threading.Lock()
        self._echo = echo
        self._file = None
        if json_path is not None:
            Path(json_path).parent.mkdir(parents=True, exist_ok=True)
            self._file = open(json_path, "a", encoding="utf-8")  # noqa: SIM115 - closed by close()
        self.history: list[dict] = []  # kept for tests and the shutdown summary (small: one per event)

    def __call__(self, event: str, **fields: object) -> dict:
        rec = {"event": event, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **fields}
        line = "serve: " + event + "".join(f" {k}={_text(v)}" for k, v in fields.items())
        with self._lock:
            self.history.append(rec)
            if self._echo is not None:
                self._echo(line)
            if self._file is not None:
                self._file.write(json.dumps(rec, default=str) + "\n")
                self._file.flush()
                os.fsync(self._file.fileno())
        return rec

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
