"""Atomic file output: write to a temporary file beside the target, then rename.

A crash or an exception part-way through leaves no half-written output file.
"""
from __future__ import annotations

import contextlib
import errno
import glob
import os
import tempfile
import time
from pathlib import Path
from typing import Iterator

from ._errors import MashInputError

__all__ = ["atomic_path", "clean_stale_temporaries"]

#: temporaries without a process id (older mashlib) older than this are stale
LEGACY_STALE_S = 3600.0


def _unwritable(path: Path, e: OSError) -> str:
    """One line: which path cannot be written, and why."""
    blocker = next((p for p in [*reversed(path.parents)] if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        return (f"{path}: cannot write it because {blocker} is a regular file, not a folder; "
                "choose another output path.")
    if isinstance(e, PermissionError) or e.errno in (errno.EACCES, errno.EPERM):
        why = "permission denied"
    elif e.errno == errno.EROFS:
        why = "read-only file system"
    else:
        why = e.strerror or str(e)
    return f"{path}: cannot write it in {path.parent}: {why}; choose a writable folder."


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def clean_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Remove temporaries of ``path`` left by runs that no longer exist; return them.

    :func:`atomic_path` names its temporary ``.{name}.{pid}.{random}.tmp`` (a notebook
    run adds ``.ipynb``); a process killed before the rename leaves it behind. Those whose
    process id is not running on this machine are removed, and ones without a process id
    (older mashlib) once they are an hour old. Temporaries of live runs are kept.
    """
    path = Path(path)
    removed = []
    try:
        entries = list(path.parent.glob(f".{glob.escape(path.name)}.*"))
    except OSError:
        return removed
    now = time.time()
    for p in entries:
        if not (p.name.endswith(".tmp") or p.name.endswith(".ipynb")) or not p.is_file():
            continue
        tail = p.name[len(path.name) + 2:].split(".")
        try:
            stale = not _pid_alive(int(tail[0])) if len(tail) >= 3 and tail[0].isdigit() else \
                now - p.stat().st_mtime > LEGACY_STALE_S
            if stale:
                p.unlink()
                removed.append(p)
        except OSError:
            continue
    return removed


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; rename it onto ``path`` on success.

    On an exception the temporary file is removed and ``path`` is untouched.

    Examples
    --------
    >>> with atomic_path("out.pdf") as tmp:          # doctest: +SKIP
    ...     fig.savefig(tmp, format="pdf")
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp",
                                   dir=path.parent)
    except OSError as e:
        raise MashInputError(_unwritable(path, e)) from None
    os.close(fd)
    tmp_path = Path(tmp)
    # mkstemp creates 0600; give the output the permissions a plain open() would.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise
