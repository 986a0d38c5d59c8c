"""Our files in /dev/shm (or the temp directory): each named by its owner, and a dead owner's swept at start.

Big answers pass through files: sources/_spool.py writes a Jaeger body there as it arrives, offload.py's
worker writes the rendered answer and page there (34 MB at 100k spans, kept while the cache holds the
answer). The process that made a file removes it — unless it is killed outright (SIGKILL, the OOM killer):
then its files stay in tmpfs, that is in memory, until reboot.

So every file's name carries its owner's tag, `correlator-<kind>-<tag>-<random>` (tag: `<pid>.<8 hex>`), and
the owner holds an exclusive `flock` on `correlator-<tag>.lock` in the same directory for as long as it lives.
The kernel drops that lock when the process ends, however it ends. A starting service (`sweep`) removes the
files of every tag whose lock file nobody holds, then that lock file. Why a lock and not "is this pid alive":
pids are reused (in a container the restarted service is pid 1 again, the dead one's very pid), and a service
in another pid namespace sharing the directory is invisible to `kill(pid, 0)`; a lock on the shared file is
neither. Never swept: files of a live owner (its lock is held, also by a fork that inherited it), another
user's files (they are 0600: not ours to open; a sticky /dev/shm would refuse their removal anyway), names
without a tag (written by a version before this one) and anything else in the directory.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import logging
import os
import re
import secrets
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

__all__ = ["DIRECTORY", "Swept", "adopt", "claim", "mkstemp", "sweep", "tag"]

log = logging.getLogger(__name__)

# tmpfs when there is one (memory, but not the service process's: the worker writes there), else the temp directory.
DIRECTORY = "/dev/shm" if Path("/dev/shm").is_dir() else None

_TAG = re.compile(r"[0-9]+\.[0-9a-f]{8}")
_LOCK = re.compile(rf"correlator-({_TAG.pattern})\.lock")

_mutex = threading.Lock()  # files are made from the loop's threads (to_thread, the spool's writer) and the loop
_tag: str | None = None
_adopted = False  # a worker process writing under its service's tag (the service holds the locks)
_locks: dict[str, int] = {}  # directory → the descriptor holding our lock there


def tag() -> str | None:
    """This process's tag (None before the first `claim`)."""
    return _tag


def adopt(owner: str | None) -> None:
    """In a worker process: name files with the service's tag; the service's lock covers them."""
    global _tag, _adopted
    if owner is not None:
        _tag, _adopted = owner, True


def claim(directory: str | None = DIRECTORY) -> str | None:
    """Hold this process's lock in `directory` (once); the tag, or None when the directory takes no file."""
    global _tag
    where = directory or tempfile.gettempdir()
    with _mutex:
        if _adopted or where in _locks:
            return _tag
        tag = _tag or f"{os.getpid()}.{secrets.token_hex(4)}"
        try:
            # Locked before it bears its name: a sweep never sees our lock file unheld.
            fd, claiming = tempfile.mkstemp(prefix=".correlator-claim-", dir=where)
        except OSError as exc:  # the file itself will fail there too, and say so where it is made
            log.warning("cannot keep files in %s: %s", where, exc.strerror)
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.rename(claiming, os.path.join(where, f"correlator-{tag}.lock"))
        except OSError as exc:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(claiming)
            log.warning("cannot lock files in %s: %s", where, exc.strerror)
            return None
        if not _locks:
            atexit.register(_release)
        _tag, _locks[where] = tag, fd
        return tag


def mkstemp(kind: str, directory: str | None) -> tuple[int, str]:
    """`tempfile.mkstemp` for a file of ours: `correlator-<kind>-<tag>-…` in `directory` (None: the temp directory).
    Tagged (and swept) only in `DIRECTORY`, the one the service sweeps; elsewhere (a test's own) `correlator-<kind>-…`."""
    owner = claim(directory) if (directory or tempfile.gettempdir()) == (DIRECTORY or tempfile.gettempdir()) else None
    return tempfile.mkstemp(prefix=f"correlator-{kind}-{owner}-" if owner else f"correlator-{kind}-", dir=directory)


@dataclass(frozen=True, slots=True)
class Swept:
    files: int
    bytes: int
    owners: tuple[str, ...]  # the dead owners' tags (`<pid>.<hex>`)


def sweep(directory: str | None = DIRECTORY) -> Swept:
    """Remove the files of owners that are gone (no one holds their lock) from `directory`, and say so in the log;
    never raises. Safe beside live services sharing the directory, and beside other sweeps."""
    where = directory or tempfile.gettempdir()
    try:
        names = os.listdir(where)
    except OSError:
        return Swept(0, 0, ())
    files = size = 0
    owners: list[str] = []
    for name in names:
        found = _LOCK.fullmatch(name)
        if found is None or found[1] == _tag:
            continue
        removed = _sweep_owner(where, found[1], names)
        if removed is not None:
            files, size, owners = files + removed[0], size + removed[1], [*owners, found[1]]
    if files:
        log.warning("removed %d file(s), %.1f MB, left in %s by correlator processes that ended without removing them "
                    "(killed?): %s", files, size / 1e6, where, ", ".join(f"pid {o.split('.')[0]}" for o in owners))
    return Swept(files, size, tuple(owners))


def _sweep_owner(where: str, owner: str, names: list[str]) -> tuple[int, int] | None:
    """(files, bytes) removed when `owner` is gone, else None."""
    lock_path = os.path.join(where, f"correlator-{owner}.lock")
    try:
        fd = os.open(lock_path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None  # another user's (0600), or swept meanwhile by another starting service
    try:
        if os.fstat(fd).st_uid != os.getuid():
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return None  # held: its owner lives
        # Holding it now: no other sweep removes these files meanwhile, and the owner (gone) makes no more.
        prefix = re.compile(rf"correlator-[a-z]+-{re.escape(owner)}-")
        files = size = 0
        for name in names:
            if prefix.match(name):
                path = os.path.join(where, name)
                try:
                    stat = os.lstat(path)
                    if stat.st_uid == os.getuid():
                        os.unlink(path)
                        files, size = files + 1, size + stat.st_size
                except OSError:
                    pass
        with contextlib.suppress(OSError):
            os.unlink(lock_path)
        return files, size
    finally:
        os.close(fd)


def _release() -> None:
    """At a normal exit: let go of our locks and sweep our own leftovers (unless a fork of ours still holds them)."""
    global _tag
    with _mutex:
        held, owner = dict(_locks), _tag
        _locks.clear()
        _tag = None
    for where, fd in held.items():
        os.close(fd)
        if owner is not None:
            with contextlib.suppress(OSError):
                _sweep_owner(where, owner, os.listdir(where))
