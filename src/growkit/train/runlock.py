"""One writer per run directory: `RunLock`.

A process that trains into a run dir (rank 0 under ``torchrun``), grows a checkpoint into ``--out`` or
exports into ``--out`` holds a lock on what it writes, for as long as it writes:

- an **OS lock**: ``flock(LOCK_EX | LOCK_NB)`` on ``<dir>/.lock`` (for an output folder that must not
  exist yet: ``<parent>/.<name>.lock`` beside it). The kernel drops it when the process ends, however it
  ends, so a killed run never leaves a stale OS lock on a local disk;
- a **holder file**, ``.lock.json`` beside it (host, pid, the pid's start time, when, the command), for
  shared filesystems where OS locks are unreliable or absent, and to name the holder in the error.

Taking the lock: the OS lock first. If another process holds it, a `GrowkitError` names the holder (an OS
lock is never overridden: it proves the holder runs). With the OS lock taken (or OS locks unsupported
here), the holder file decides:

- none, or this process's own (an earlier lock object that was never released): take it;
- **stale** — the holder's host is this one and its pid is dead (or reused: another start time): take it
  over with a `GrowkitWarning` naming the dead holder (a run killed by SIGKILL resumes at once);
- **live or unknown** — another host, which cannot be checked from here, or a live pid on this host
  that holds no OS lock: a `GrowkitError` naming the holder, unless ``force`` (``--force-unlock``), which
  takes it over with a `GrowkitWarning` saying whose lock it overrides.

Releasing (at the end of the run, also on errors) removes both files. Readers (``growkit plot``, what
``growkit export`` reads, ``--resume-from`` another run's checkpoint) take no lock: checkpoints are
renamed into place whole, so a reader sees only complete ones.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import json
import os
import secrets
import socket
import sys
import time
import warnings
from pathlib import Path
from typing import Any

from growkit.errors import GrowkitError, GrowkitWarning

try:
    import fcntl
except ImportError:  # not POSIX: the holder file alone
    fcntl = None  # type: ignore[assignment]

LOCK_FILE = ".lock"
HOLDER_FILE = ".lock.json"
_NO_OS_LOCK = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}
"""flock errors that mean this filesystem has no (working) OS locks, rather than that the lock is held."""


class RunLock:
    """The write lock of one directory (see the module docstring).

    ``RunLock(run_dir)`` locks a run dir from inside it; ``RunLock(out, beside=True)`` locks a folder that
    is written whole later (``growkit grow --out``, ``growkit export --out``) from beside it. Use as a
    context manager, or `acquire` / `release`.
    """

    def __init__(self, target: Path | str, *, beside: bool = False, force: bool = False,
                 command: str | None = None) -> None:
        self.target = Path(target)
        self.beside = beside
        folder, prefix = (self.target.parent, f".{self.target.name}") if beside else (self.target, "")
        self.lock_path = folder / f"{prefix}{LOCK_FILE}"
        self.holder_path = folder / f"{prefix}{HOLDER_FILE}"
        self.force = force
        self.command = command if command is not None else _command()
        self.os_lock = False
        """Whether the OS lock is held (False where the filesystem has none: the holder file alone)."""
        self._fd: int | None = None
        self._token: str | None = None

    @property
    def held(self) -> bool:
        return self._token is not None

    def acquire(self) -> RunLock:
        """Take the lock, or raise a `GrowkitError` naming the holder; a no-op when already held."""
        if self.held:
            return self
        try:
            self.lock_path.parent.mkdir(parents=True, exist_ok=True)
            self._os_lock()
            self._claim()
        except OSError as e:
            self._close()
            hint = "choose another --out" if self.beside else "choose one you can write, e.g. --set run.dir=runs/my-run"
            raise GrowkitError(f"{str(self.target)!r} is not writable ({e.strerror or e}), so it cannot be locked for "
                               f"writing: {hint}") from None
        except BaseException:
            self._close()
            raise
        return self

    def release(self) -> None:
        """Give the lock up: remove the holder file (if still ours) and the lock file, drop the OS lock."""
        if self._token is not None:
            holder = read_holder(self.holder_path)
            if holder is not None and holder.get("token") == self._token:
                with contextlib.suppress(OSError):
                    self.holder_path.unlink()
            if self._fd is not None:  # unlinked while held: a process that opened it re-checks the inode
                with contextlib.suppress(OSError):
                    self.lock_path.unlink()
            self._token = None
        self._close()

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.release()

    # -- the two halves ------------------------------------------------------------------------
    def _os_lock(self) -> None:
        """flock the lock file; retried when the file was replaced between our open and our lock."""
        if fcntl is None:
            return
        for _ in range(20):
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                os.close(fd)
                if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                    holder = self._live_holder()
                    raise GrowkitError(
                        f"{self.target} is in use by another growkit process ({describe(holder)}): one process "
                        f"writes a run dir at a time; wait for it to end or stop it (--force-unlock cannot "
                        f"override a lock its OS holds for a running process); nothing was changed") from None
                if e.errno in _NO_OS_LOCK:
                    return
                raise
            try:
                same = os.stat(self.lock_path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                self._fd, self.os_lock = fd, True
                return
            os.close(fd)  # the holder released (and removed) it meanwhile: lock the new file
        raise GrowkitError(f"could not lock {self.lock_path}: it keeps being replaced; is another process "
                           f"starting and stopping runs in {self.target}?")

    def _live_holder(self, wait_s: float = 1.0) -> dict[str, Any] | None:
        """The holder file of a process that holds the OS lock. It writes the file just after taking the
        lock, so for a moment the file may be missing or still name a dead predecessor: wait for it."""
        deadline = time.monotonic() + wait_s
        while True:
            holder = read_holder(self.holder_path)
            if (holder is not None and holder_state(holder) != "stale") or time.monotonic() > deadline:
                return holder
            time.sleep(0.02)

    def _claim(self) -> None:
        """Check the holder file and write ours (see the module docstring for the rules)."""
        me = holder_record(self.command)
        for _ in range(3):
            holder = read_holder(self.holder_path)
            if holder is not None:
                state = holder_state(holder)
                if state == "live" and not self.force:
                    raise GrowkitError(
                        f"{self.target} is locked by {describe(holder)}, which may still be running (its host "
                        f"cannot be checked from here, or it holds no OS lock): one process writes a run dir at "
                        f"a time; if that process is gone, pass --force-unlock; nothing was changed")
                if state == "live":
                    warnings.warn(f"--force-unlock: overriding the lock on {self.target} held by "
                                  f"{describe(holder)}; if that process is still running, both now write to it",
                                  GrowkitWarning, stacklevel=4)
                elif state == "stale":
                    warnings.warn(f"taking over the lock on {self.target} left by {describe(holder)}, which is no "
                                  f"longer running (killed or crashed)", GrowkitWarning, stacklevel=4)
            tmp = self.holder_path.with_name(f"{self.holder_path.name}.tmp-{os.getpid()}-{me['token']}")
            tmp.write_text(json.dumps(me, indent=2))
            try:
                if holder is None:
                    try:  # create, never overwrite: without OS locks two newcomers cannot both win
                        os.link(tmp, self.holder_path)
                    except FileExistsError:
                        continue  # someone wrote one meanwhile: judge it
                else:
                    os.replace(tmp, self.holder_path)
            finally:
                tmp.unlink(missing_ok=True)
            self._token = me["token"]
            return
        raise GrowkitError(f"could not lock {self.target}: its lock file {self.holder_path} keeps changing")

    def _close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)  # drops the OS lock
            self._fd, self.os_lock = None, False


# -- the holder file ---------------------------------------------------------------------------------
def holder_record(command: str) -> dict[str, Any]:
    """This process as a lock holder: host, pid, the pid's start time (to tell a reused pid), when, what."""
    return {"host": socket.gethostname(), "pid": os.getpid(), "pid_start": _pid_start(os.getpid()),
            "started": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "command": command,
            "token": secrets.token_hex(8)}


def read_holder(path: Path) -> dict[str, Any] | None:
    """The holder file's record; None when there is none. An unreadable one is an unknown holder."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {"unreadable": str(path)}
    return data if isinstance(data, dict) else {"unreadable": str(path)}


def holder_state(holder: dict[str, Any]) -> str:
    """``"mine"`` (this process), ``"stale"`` (this host, pid dead or reused) or ``"live"`` (or unknown)."""
    if holder.get("host") != socket.gethostname() or not isinstance(holder.get("pid"), int):
        return "live"
    pid = holder["pid"]
    if pid == os.getpid():
        return "mine"
    start = _pid_start(pid)
    if not _alive(pid) or (start is not None and holder.get("pid_start") not in (None, start)):
        return "stale"
    return "live"


def describe(holder: dict[str, Any] | None) -> str:
    """The holder in words, for messages: ``pid 123 on host h, started 2026-…Z: growkit train …``."""
    if holder is None:
        return "holder unknown: its lock file names none"
    if "unreadable" in holder:
        return f"holder unknown: {holder['unreadable']} is unreadable"
    return (f"pid {holder.get('pid')} on host {holder.get('host')}, started {holder.get('started')}: "
            f"{holder.get('command')}")


def _command() -> str:
    """This process's command line, for the holder file (``python -m growkit`` shows as ``growkit``)."""
    name = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python"
    return " ".join(["growkit" if name == "__main__.py" else name, *sys.argv[1:]])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    try:  # a killed child its parent has not reaped yet is a zombie: dead
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[0] != "Z"


def _pid_start(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (Linux ``/proc/PID/stat`` field 22); None elsewhere."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[19])
    except (OSError, ValueError, IndexError):
        return None
