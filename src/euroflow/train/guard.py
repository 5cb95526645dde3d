"""One trainer per training directory.

The trainer holds an exclusive lock (``flock``) on ``<out>/trainer.lock`` for its whole life; the
kernel releases it when the process ends, however it ends. A second trainer started on the same
directory (a rerun after the Snakemake head was killed, while the first trainer runs on as an
orphan) does not train beside it: it writes ``<out>/STOP``, which every rank checks after each
step, waits for the first trainer to save a checkpoint of that step and exit, and then resumes
from that checkpoint. A trainer on this host that does not stop in time is killed (with the
processes it started); one on another host is named in an error instead.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Iterator

from euroflow.errors import EuroflowError
from euroflow.train.loop import STOP_FILE

LOCK_FILE = "trainer.lock"
# a step and a checkpoint save of the largest models take minutes
DEFAULT_STOP_WAIT_S = 900.0
KILL_WAIT_S = 30.0


def _holder(lock_path: Path) -> dict:
    try:
        holder = json.loads(lock_path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _wait_for_lock(fd: int, seconds: float, poll_s: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if _try_lock(fd):
            return True
        time.sleep(poll_s)
    return _try_lock(fd)


def _kill_tree(pid: int) -> None:
    import psutil

    try:
        root = psutil.Process(pid)
        tree = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for process in tree:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.send_signal(signal.SIGKILL)
    psutil.wait_procs(tree, timeout=KILL_WAIT_S)


@contextlib.contextmanager
def trainer_lock(out_dir: str | os.PathLike, *, stop_wait_s: float = DEFAULT_STOP_WAIT_S, poll_s: float = 0.5) -> Iterator[dict]:
    """Hold the training directory ``out_dir`` for this process; stop a trainer that holds it.
    Yields what it found: ``{"stopped": {holder} or None}``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lock_path, stop_path = out / LOCK_FILE, out / STOP_FILE
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    found: dict = {"stopped": None}
    try:
        if not _try_lock(fd):
            holder = _holder(lock_path)
            who = f"pid {holder.get('pid', '?')} on {holder.get('host', '?')} (started {holder.get('started_at', '?')})"
            print(f"euroflow: training in {out} is still run by {who}: asking it to save a checkpoint and stop",
                  file=sys.stderr, flush=True)
            stop_path.write_text(json.dumps({"requested_by": os.getpid(), "host": socket.gethostname()}) + "\n", encoding="utf-8")
            if not _wait_for_lock(fd, stop_wait_s, poll_s):
                if holder.get("host") != socket.gethostname() or not isinstance(holder.get("pid"), int):
                    raise EuroflowError(
                        f"{lock_path}: held by {who}, which did not stop within {stop_wait_s:.0f} s; "
                        "stop it on that host and rerun"
                    )
                print(f"euroflow: {who} did not stop within {stop_wait_s:.0f} s: killing it", file=sys.stderr, flush=True)
                _kill_tree(holder["pid"])
                if not _wait_for_lock(fd, KILL_WAIT_S, poll_s):
                    raise EuroflowError(f"{lock_path}: still held after killing {who}; stop it and rerun")
            found["stopped"] = holder
        stop_path.unlink(missing_ok=True)
        me = {"pid": os.getpid(), "host": socket.gethostname(),
              "started_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "argv": sys.argv}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(me) + "\n").encode(), 0)
        yield found
    finally:
        os.close(fd)  # releases the lock; the file (and its last holder) stays, for the record
