"""Server: the SCP (association threads) and ONE worker thread that processes complete studies one
at a time (the model is loaded once, by whoever built `process`) and forwards their results.

The worker owns every transition after `receiving`; the SCP threads only add instances. Stopping
closes the listening socket first, then lets the worker finish its current step (a study being
processed is finished; forwarding stops between retries), so a stop never loses work: whatever was
not finished is resumed from the on-disk queue at the next start.
"""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

from sdpm_cli.serve import queue as q
from sdpm_cli.serve.config import ServeConfig
from sdpm_cli.serve.events import EventLog
from sdpm_cli.serve.forward import ForwardError, send_files
from sdpm_cli.serve.scp import make_handlers

Processor = Callable[[Path, Path], Sequence[Path]]


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}"[:300] if text else type(exc).__name__


def _fsync_tree(folder: Path) -> None:
    for p in folder.rglob("*"):
        if p.is_file():
            fd = os.open(p, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    for d in [folder, *(p for p in folder.rglob("*") if p.is_dir())]:
        q.fsync_dir(d)


class Server:
    """The DICOM node. `start()` returns at once; `stop()` is safe to call from any thread, once or more."""

    def __init__(self, config: ServeConfig, process: Processor, log: Optional[EventLog] = None) -> None:
        self.config = config
        self.process = process
        self.log = log or EventLog(config.json_log)
        self.queue = q.DiskQueue(config.out_dir, config.max_instances, config.max_study_mb * 1e6)
        self._stop = threading.Event()
        self._worker: Optional[threading.Thread] = None
        self._ae = None
        self._scp = None
        self.port: Optional[int] = None
        self.busy = threading.Event()  # set while the worker processes or forwards a study

    # ------------------------------------------------------------------------------ lifecycle
    def start(self) -> "Server":
        from pynetdicom import ALL_TRANSFER_SYNTAXES, AE, AllStoragePresentationContexts
        from pynetdicom.sop_class import Verification

        cfg = self.config
        resumed = self.queue.recover()
        for st in resumed:
            self.log("study_resumed", study=st.key, state=st.state, instances=len(st.instances),
                     pending_forward=len(st.pending_results()) if st.state == q.PROCESSED else 0)
        ae = AE(ae_title=cfg.ae_title)
        ae.maximum_associations = cfg.max_associations
        ae.require_calling_aet = list(cfg.allow)
        ae.add_supported_context(Verification)
        for cx in AllStoragePresentationContexts:  # every storage class; the processor picks the CT series
            ae.add_supported_context(cx.abstract_syntax, ALL_TRANSFER_SYNTAXES)
        self._ae = ae
        try:
            self._scp = ae.start_server((cfg.bind, cfg.port), block=False,
                                        evt_handlers=make_handlers(self.queue, self.log, cfg.allow))
        except OSError as exc:
            from sdpm_cli.errors import UsageError

            raise UsageError(f"cannot listen on {cfg.bind}:{cfg.port}: {exc.strerror or exc}") from None
        self.port = int(self._scp.server_address[1])
        self._worker = threading.Thread(target=self._work, name="sdpm-serve-worker", daemon=True)
        self._worker.start()
        self.log("listening", ae_title=cfg.ae_title, port=self.port, forward=str(cfg.forward or "none"),
                 idle_s=cfg.idle_s, resumed=len(resumed))
        return self

    def stop(self, timeout: Optional[float] = None) -> bool:
        """Stop accepting, then wait for the worker's current step; True when it finished in time."""
        first = not self._stop.is_set()
        self._stop.set()
        if self._ae is not None:
            self._ae.shutdown()  # closes the socket and aborts open associations (unacknowledged = resent)
            self._ae = None
        done = True
        if self._worker is not None:
            self._worker.join(timeout)
            done = not self._worker.is_alive()
        if first:
            self.log("stopped", finished=done, **self.queue.counts())
        return done

    def __enter__(self) -> "Server":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
        self.log.close()

    # ------------------------------------------------------------------------------ the worker
    def _work(self) -> None:
        cfg = self.config
        while not self._stop.is_set():
            for st in self.queue.complete_idle(cfg.idle_s):
                self.log("study_complete", study=st.key, instances=len(st.instances), mb=round(st.nbytes / 1e6, 3))
            st = self.queue.next_work(forwarding=cfg.forward is not None)
            if st is None:
                self._stop.wait(cfg.poll_s)
                continue
            self.busy.set()
            try:
                if st.state == q.COMPLETE:
                    self._process(st)
                if st.state == q.PROCESSED and cfg.forward is not None and not self._stop.is_set():
                    self._forward(st)
            except Exception as exc:  # noqa: BLE001 - the worker must outlive any one study
                self.log("worker_error", study=st.key, reason=_one_line(exc))
                st.gave_up = True
            finally:
                self.busy.clear()

    def _process(self, st: q.Study) -> None:
        tmp = st.folder / "result.tmp"
        self.queue.set_state(st, q.PROCESSING)
        self.log("study_processing", study=st.key, instances=len(st.instances))
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(st.result, ignore_errors=True)
        tmp.mkdir(parents=True)
        t0 = time.perf_counter()
        try:
            files = [Path(p) for p in self.process(st.received, tmp)]
            names = []
            for p in files:
                rel = p.resolve().relative_to(tmp.resolve())  # ValueError: a result outside result_dir
                if not p.is_file():
                    raise FileNotFoundError(f"the processor returned a missing file {rel}")
                names.append(rel.as_posix())
        except Exception as exc:  # noqa: BLE001 - a study that cannot be processed is recorded, not retried
            dt = round(time.perf_counter() - t0, 3)
            self.queue.set_state(st, q.FAILED, reason=_one_line(exc), process_s=dt)
            self.log("study_failed", study=st.key, reason=_one_line(exc), process_s=dt)
            return
        _fsync_tree(tmp)
        os.replace(tmp, st.result)  # the results appear whole: fixed from here on (their UIDs too)
        q.fsync_dir(st.folder)
        dt = round(time.perf_counter() - t0, 3)
        self.queue.set_state(st, q.PROCESSED, results=[f"result/{n}" for n in names], forwarded=[], process_s=dt)
        self.log("study_processed", study=st.key, results=len(names), process_s=dt)

    def _forward(self, st: q.Study) -> None:
        cfg = self.config
        for attempt in range(1, cfg.forward_attempts + 1):
            pending = st.pending_results()
            if not pending:
                break
            t0 = time.perf_counter()
            try:
                n = send_files(cfg.forward, cfg.ae_title, [st.folder / r for r in pending],
                               lambda p: self.queue.mark_forwarded(st, p.relative_to(st.folder).as_posix()),
                               timeout_s=cfg.forward_timeout_s)
                self.log("study_forwarded", study=st.key, sent=n, attempt=attempt,
                         forward_s=round(time.perf_counter() - t0, 3), destination=str(cfg.forward))
                return
            except (ForwardError, OSError) as exc:
                wait = cfg.forward_backoff_s * 2 ** (attempt - 1)
                last = attempt == cfg.forward_attempts
                self.queue.set_state(st, st.state, forward_error=_one_line(exc),
                                     forward_attempts=int(st.info.get("forward_attempts", 0)) + 1)
                self.log("forward_failed" if last else "forward_retry", study=st.key, attempt=attempt,
                         reason=str(exc), pending=len(st.pending_results()), **({} if last else {"wait_s": wait}))
                if last or self._stop.wait(wait):
                    break
        if st.pending_results():
            st.gave_up = True  # kept as processed: forwarded at the next start


def run_until_signalled(server: Server, on_stop: Optional[Callable[[str], None]] = None) -> int:
    """Serve until SIGTERM/SIGINT; the first signal stops gracefully (exit 0), a second one abandons
    the running step at once (it is resumed from the queue at the next start)."""
    stopping = threading.Event()

    def handler(signum, _frame):
        if stopping.is_set():
            server.log("abandoned", signal=signal.Signals(signum).name)
            server.log.close()
            os._exit(0)
        stopping.set()
        if on_stop is not None:
            on_stop(signal.Signals(signum).name)

    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.start()
        while not stopping.wait(0.5):
            pass
        server.stop()
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        server.log.close()
    return 0
