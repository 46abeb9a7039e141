"""The on-disk queue: one folder per study under the output folder, its state in one small JSON file
replaced atomically (temporary, fsync, rename, folder fsync) at every transition.

    <out-dir>/<key>/state.json   {"state": ..., "results": [...], "forwarded": [...], ...}
    <out-dir>/<key>/received/    the instances as received, one file per SOP instance (hashed name)
    <out-dir>/<key>/result/      the processor's outputs, renamed into place whole (result.tmp/ before)

States: receiving -> complete -> processing -> processed -> forwarded, or the terminal failed
(processing raised) and refused (a bound was exceeded). After a kill, `recover` resumes: receiving
waits for --idle again, processing is redone from scratch (nothing of it was sent), processed
forwards only the results not yet recorded as forwarded; forwarded, failed and refused stay.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from sdpm_cli.serve.events import key as uid_key

RECEIVING, COMPLETE, PROCESSING, PROCESSED, FORWARDED, FAILED, REFUSED = (
    "receiving", "complete", "processing", "processed", "forwarded", "failed", "refused")
STATES = (RECEIVING, COMPLETE, PROCESSING, PROCESSED, FORWARDED, FAILED, REFUSED)
STATE_FILE = "state.json"

# DICOM C-STORE statuses the node answers with (PS3.4 B.2.3)
SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700  # disk full, a bound exceeded, the study refused
CANNOT_UNDERSTAND = 0xC000  # no StudyInstanceUID, undecodable dataset
STUDY_CLOSED = 0xC001  # a new instance for a study already complete (sdpm-specific failure code)


def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:  # platforms that cannot open a folder
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def durable_write(dest: Path, data: bytes) -> None:
    """`data` at `dest`, whole or not at all, on disk when this returns (fsync, rename, folder fsync)."""
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.{threading.get_ident()}.part")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            tmp.unlink()
    fsync_dir(dest.parent)


@dataclass
class Study:
    """One study's record; its persistent part is `state` and `info`, the rest is rebuilt from disk."""

    key: str
    folder: Path
    state: str = RECEIVING
    info: dict = field(default_factory=dict)  # results, forwarded, reason, attempts... (what state.json holds)
    instances: set = field(default_factory=set)  # stored SOP instance keys
    nbytes: int = 0
    inflight: int = 0  # stores reserved but not yet on disk
    first_rx: float = 0.0
    last_rx: float = 0.0  # monotonic time of the last stored instance (or of recovery)
    gave_up: bool = False  # forwarding failed every attempt in this run (retried at the next start)

    @property
    def received(self) -> Path:
        return self.folder / "received"

    @property
    def result(self) -> Path:
        return self.folder / "result"

    def pending_results(self) -> list[str]:
        done = set(self.info.get("forwarded", []))
        return [r for r in self.info.get("results", []) if r not in done]


@dataclass(frozen=True)
class Ticket:
    """A reserved store: where the instance goes; `status` != SUCCESS means refused (with `reason`)."""

    status: int
    study: Optional[Study] = None
    path: Optional[Path] = None
    reason: str = ""
    duplicate: bool = False
    new_study: bool = False
    nbytes: int = 0


class DiskQueue:
    """The studies under `root`; every method is safe to call from several threads."""

    def __init__(self, root: Path, max_instances: int, max_bytes: float) -> None:
        self.root = Path(root)
        self.max_instances, self.max_bytes = max_instances, max_bytes
        self.lock = threading.RLock()
        self.studies: dict[str, Study] = {}

    # ---------------------------------------------------------------------------- persistence
    def _save(self, st: Study) -> None:
        st.folder.mkdir(parents=True, exist_ok=True)
        rec = {"state": st.state, "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **st.info}
        durable_write(st.folder / STATE_FILE, (json.dumps(rec, indent=1) + "\n").encode())

    def set_state(self, st: Study, state: str, **info) -> None:
        with self.lock:
            st.state = state
            st.info.update(info)
            self._save(st)

    def recover(self) -> list[Study]:
        """Load every study folder after a start; returns those whose state changed (resumed work)."""
        resumed = []
        self.root.mkdir(parents=True, exist_ok=True)
        now = time.monotonic()
        for folder in sorted(p for p in self.root.iterdir() if (p / STATE_FILE).is_file()):
            try:
                rec = json.loads((folder / STATE_FILE).read_text())
            except (OSError, ValueError):
                continue  # not ours, or damaged beyond an atomic write: left alone
            state = rec.pop("state", None)
            rec.pop("updated", None)
            if state not in STATES:
                continue
            st = Study(key=folder.name, folder=folder, state=state, info=rec, first_rx=now, last_rx=now)
            for f in st.received.glob("*.dcm") if st.received.is_dir() else []:
                st.instances.add(f.stem)
                st.nbytes += f.stat().st_size
            for leftover in st.received.glob(".*.part") if st.received.is_dir() else []:
                leftover.unlink(missing_ok=True)  # a store killed before its rename: never acknowledged
            if state == PROCESSING:  # killed while processing: nothing of it was sent; redo it whole
                shutil.rmtree(folder / "result.tmp", ignore_errors=True)
                shutil.rmtree(st.result, ignore_errors=True)
                st.state = COMPLETE
                self._save(st)
            if state in (RECEIVING, COMPLETE, PROCESSING) or (state == PROCESSED and st.pending_results()):
                resumed.append(st)
            self.studies[st.key] = st
        return resumed

    # ---------------------------------------------------------------------------- receiving
    def begin_store(self, study_uid: str, sop_uid: str, nbytes: int) -> Ticket:
        """Reserve room for one instance (bounds and state checked here, under the lock)."""
        skey, ikey = uid_key(study_uid), uid_key(sop_uid)
        with self.lock:
            st = self.studies.get(skey)
            new = st is None
            if new:
                now = time.monotonic()
                st = Study(key=skey, folder=self.root / skey, first_rx=now, last_rx=now)
                st.received.mkdir(parents=True, exist_ok=True)
                self._save(st)
                self.studies[skey] = st
            if ikey in st.instances:  # a resend (also after a restart): already durable, nothing to do
                st.last_rx = time.monotonic()
                return Ticket(SUCCESS, st, st.received / f"{ikey}.dcm", duplicate=True)
            if st.state == REFUSED:
                return Ticket(OUT_OF_RESOURCES, st, reason="study refused: " + st.info.get("reason", ""))
            if st.state != RECEIVING:
                return Ticket(STUDY_CLOSED, st, reason=f"study is {st.state}: new instances are not added")
            n, size = len(st.instances) + st.inflight + 1, st.nbytes + nbytes
            reason = ""
            if n > self.max_instances:
                reason = f"more than {self.max_instances} instances"
            elif size > self.max_bytes:
                reason = f"more than {self.max_bytes / 1e6:g} MB"
            if reason:
                self._refuse(st, reason)
                return Ticket(OUT_OF_RESOURCES, st, reason=reason)
            st.inflight += 1
            st.nbytes += nbytes
            return Ticket(SUCCESS, st, st.received / f"{ikey}.dcm", new_study=new, nbytes=nbytes)

    def _refuse(self, st: Study, reason: str) -> None:
        """A bound exceeded: the study is never processed (a partial study must not be measured);
        its instances are deleted to free the disk. Resending it needs its folder removed."""
        self.set_state(st, REFUSED, reason=reason, instances=len(st.instances))
        shutil.rmtree(st.received, ignore_errors=True)
        st.instances.clear()

    def end_store(self, ticket: Ticket, ok: bool) -> bool:
        """The reserved instance is durable (ok) or failed; returns whether it is kept (a study refused
        while the file was being written drops it, and the store is then answered with a failure)."""
        st, path = ticket.study, ticket.path
        if st is None or ticket.duplicate:
            return ok
        with self.lock:
            st.inflight -= 1
            if ok and st.state == RECEIVING:
                st.instances.add(path.stem)
                st.last_rx = time.monotonic()
                return True
            st.nbytes -= ticket.nbytes
            if ok and path is not None:
                path.unlink(missing_ok=True)
            return False

    # ---------------------------------------------------------------------------- the worker's view
    def complete_idle(self, idle_s: float) -> list[Study]:
        """Receiving studies with nothing stored for `idle_s` and nothing in flight become complete."""
        now, done = time.monotonic(), []
        with self.lock:
            for st in self.studies.values():
                if st.state == RECEIVING and st.inflight == 0 and st.instances and now - st.last_rx >= idle_s:
                    self.set_state(st, COMPLETE, instances=len(st.instances), bytes=st.nbytes)
                    done.append(st)
        return done

    def next_work(self, forwarding: bool) -> Optional[Study]:
        """The next study to work on: complete ones first (oldest first), then results to forward."""
        with self.lock:
            ordered = sorted(self.studies.values(), key=lambda s: s.last_rx)
            for st in ordered:
                if st.state == COMPLETE:
                    return st
            if forwarding:
                for st in ordered:
                    if st.state == PROCESSED and not st.gave_up and st.pending_results():
                        return st
        return None

    def counts(self) -> dict[str, int]:
        with self.lock:
            out: dict[str, int] = {}
            for st in self.studies.values():
                out[st.state] = out.get(st.state, 0) + 1
            return out

    def mark_forwarded(self, st: Study, name: str) -> None:
        """Record one result as accepted by the destination (atomically; forwarded when the last is)."""
        with self.lock:
            done = list(st.info.get("forwarded", []))
            if name not in done:
                done.append(name)
            st.info["forwarded"] = done
            if not st.pending_results():
                st.state = FORWARDED
            self._save(st)
