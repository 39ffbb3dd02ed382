"""A full disk, recognised wherever it surfaces, so a run stops with one line that names the path and the fix
(bench.core.errors.DiskFullError) instead of a library's traceback.

Python's own writes raise OSError(ENOSPC); safetensors names the OS error in its message; torch.save does
neither (its zip writer reports "unexpected pos ..."), so a failure while something is being saved also counts
as a full disk when the filesystem it was writing to has (next to) nothing left.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path

from bench.core.errors import DiskFullError

FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
# How libraries that do not raise OSError word it: the C library's strerror texts and Rust's ErrorKind.
FULL_TEXTS = ("No space left on device", "Disk quota exceeded", "StorageFull", "QuotaExceeded")
# Below this much free space a failed save is taken for a full disk: a writer that ran out leaves its partial
# file in place, so the filesystem is still (all but) full when the error is examined.
NEARLY_FULL_BYTES = 1 << 20


def free_bytes(path: Path) -> int | None:
    """Bytes an unprivileged writer may still use on the filesystem holding `path` (or its nearest existing
    ancestor); None when it cannot be read."""
    for folder in (path, *path.parents):
        try:
            st = os.statvfs(folder)
        except OSError:
            continue
        return st.f_bavail * st.f_frsize
    return None


def _chain(err: BaseException) -> Iterator[BaseException]:
    """The error and the errors it was raised from or during (torch chains its I/O error as the context)."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [err]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        todo += [e.__cause__, e.__context__]


def is_disk_full(err: BaseException, folder: Path | None = None) -> bool:
    """Whether `err` means that a write ran out of space: an ENOSPC/EDQUOT OSError anywhere in its chain, a
    library's message saying so, or (with `folder`, the place being written) any failure while that
    filesystem is nearly full."""
    if not isinstance(err, Exception):  # KeyboardInterrupt, SystemExit: stopped from outside, never a disk
        return False
    for e in _chain(err):
        if isinstance(e, DiskFullError) or (isinstance(e, OSError) and e.errno in FULL_ERRNOS):
            return True
        if any(text in str(e) for text in FULL_TEXTS):
            return True
    if folder is None:
        return False
    free = free_bytes(folder)
    return free is not None and free < NEARLY_FULL_BYTES


def disk_full_error(
    err: BaseException, folder: Path, setting: str = "paths.results or paths.scratch"
) -> DiskFullError | None:
    """The DiskFullError `err` amounts to (naming the file when the OS error names one, else `folder`), or
    None when `err` is something else."""
    for e in _chain(err):
        if isinstance(e, DiskFullError):
            return e
    if not is_disk_full(err, folder):
        return None
    named = next((e.filename for e in _chain(err) if isinstance(e, OSError) and e.filename), None)
    return DiskFullError(named or folder, setting)


def append_whole(fd: int, data: bytes, path: Path) -> None:
    """Append `data` to the open file `fd` (O_APPEND) entirely or not at all: on a full disk the bytes that
    did fit are cut off again, so a log never ends in half a row, and DiskFullError names `path`."""
    start = os.lseek(fd, 0, os.SEEK_END)
    view = memoryview(data)
    try:
        while view:
            view = view[os.write(fd, view) :]
    except OSError as err:
        if err.errno not in FULL_ERRNOS:
            raise
        os.ftruncate(fd, start)  # frees blocks, needs none
        raise DiskFullError(path) from err
