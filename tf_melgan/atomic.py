"""Writing files so that a kill, a full disk or an error never leaves a partial one.

Every file `train`, `synthesize` and `tflite/convert.py` write goes through `replacing`: the
data go to a temporary file in the same folder (same file system, so the rename is atomic),
which is flushed to disk and then renamed over the target with `os.replace`. At any moment
the target is the old file or the new one, never a mix. Temporaries of a killed process
(names starting with TMP_PREFIX) are removed by `remove_temporaries` on the next start.

Failures become `WriteError`: one line naming the path and the reason, with the space
needed and free when the disk is full. No TensorFlow here.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import shutil

from tf_melgan.cli import one_line
from tf_melgan.errors import TfMelganError

TMP_PREFIX = ".tmp-"  # + pid-random- + the target's name (so its extension is kept)
_REASONS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO,
            errno.EFBIG)


class WriteError(TfMelganError, OSError):
    """A file could not be written; str() is one line naming the path and the reason."""

    def __init__(self, message: str, code: int | None = None):
        super().__init__(message)
        self.errno = code


def _mb(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n < 1e8 else f"{n / 1e9:.2f} GB"


def free_bytes(path: str) -> int | None:
    """Free space for unprivileged writers on the file system holding `path` (or its
    nearest existing parent), or None when it cannot be read."""
    path = os.path.abspath(path)
    while not os.path.exists(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None


def error_code(error: BaseException) -> int | None:
    """The errno of an OSError, or the one named in another library's message
    (TensorFlow's "...; No space left on device", HDF5's "errno = 28")."""
    code = getattr(error, "errno", None)
    if isinstance(code, int) and code:
        return code
    text = str(error)
    found = re.search(r"errno = (\d+)", text)
    if found:
        return int(found.group(1))
    return next((c for c in _REASONS if os.strerror(c) in text), None)


def describe(error: BaseException, path: str, need_bytes: int | None = None) -> str:
    """One line: `path`: the reason `error` gives, with needed / free space when the disk
    is full. libsndfile says only "System error.": a nearly full disk is named then."""
    code, free = error_code(error), free_bytes(path)
    if code is None and free is not None and free < max(need_bytes or 0, 1 << 20):
        code = errno.ENOSPC
    if code in (errno.ENOSPC, errno.EDQUOT):
        need = f"needs about {_mb(need_bytes)}, " if need_bytes else ""
        room = f"{_mb(free)} free" if free is not None else "free space unknown"
        return f"{path}: no space left on device ({need}{room})"
    if code:
        return f"{path}: {os.strerror(code)}"
    return f"{path}: {type(error).__name__}: {one_line(error)}"


def temporary_path(path: str) -> str:
    """A fresh name for a temporary file next to `path`, ending in `path`'s own name."""
    folder, name = os.path.split(os.path.abspath(path))
    return os.path.join(folder, f"{TMP_PREFIX}{os.getpid()}-{secrets.token_hex(3)}-{name}")


def _sync(path: str) -> None:
    """Flushes a file (or a folder's entries, after a rename) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as e:  # some file systems cannot fsync a directory
        if e.errno not in (errno.EINVAL, errno.ENOTSUP) or not os.path.isdir(path):
            raise
    finally:
        os.close(fd)


@contextlib.contextmanager
def replacing_all(paths, need_bytes: int | None = None):
    """Yields temporary paths to write instead of `paths`. When the block ends normally,
    every one of them is flushed to disk and only then are they renamed over `paths`, in
    order; on any error they are removed, `paths` are left as they were and OSErrors (and
    libsndfile's errors) are raised as WriteError. `need_bytes`: the expected total size,
    quoted when the disk is full."""
    paths = [os.fspath(p) for p in paths]
    temporaries = [temporary_path(p) for p in paths]
    current = paths[0]
    try:
        for path in paths:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        yield temporaries
        for path, tmp in zip(paths, temporaries):
            current = path
            if not os.path.exists(tmp):
                raise WriteError(f"{path}: the writer did not create {tmp}")
            _sync(tmp)
        for path, tmp in zip(paths, temporaries):
            current = path
            os.replace(tmp, path)
        for folder in dict.fromkeys(os.path.dirname(os.path.abspath(p)) for p in paths):
            _sync(folder)
    except BaseException as e:
        for tmp in temporaries:
            with contextlib.suppress(OSError):
                os.remove(tmp)
        if isinstance(e, WriteError):
            raise
        for path, tmp in zip(paths, temporaries):  # name the file the error names
            if os.path.basename(tmp) in str(e):
                current = path
        if isinstance(e, OSError) or type(e).__name__ == "LibsndfileError":
            raise WriteError(describe(e, current, need_bytes), error_code(e)) from e
        raise


@contextlib.contextmanager
def replacing(path, need_bytes: int | None = None):
    """`replacing_all` for one file: yields one temporary path."""
    with replacing_all([path], need_bytes) as (tmp,):
        yield tmp


def write_text(path, text: str) -> None:
    """Replaces `path` with `text` (UTF-8) atomically."""
    data = text.encode("utf-8")
    with replacing(path, len(data)) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)


def check_writable(path, need_bytes: int | None = None) -> None:
    """Raises WriteError unless a file can be created next to `path` (its folder is made
    when missing) and, with `need_bytes`, that much space is free there. Call it before
    long work whose result goes to `path`."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
        probe = temporary_path(path)
        with open(probe, "wb"):
            pass
        os.remove(probe)
    except OSError as e:
        raise WriteError(describe(e, path), error_code(e)) from None
    free = free_bytes(folder)
    if need_bytes and free is not None and free < need_bytes:
        raise WriteError(f"{path}: not enough space (needs about {_mb(need_bytes)}, "
                         f"{_mb(free)} free)", errno.ENOSPC)


def remove_temporaries(folder) -> list[str]:
    """Removes the temporary files `replacing` leaves when its process is killed, in
    `folder` (not below). Only call it while no other process writes there (train holds
    the model dir's lock). Returns the removed paths."""
    removed = []
    with contextlib.suppress(FileNotFoundError):
        for name in sorted(os.listdir(folder)):
            path = os.path.join(folder, name)
            if name.startswith(TMP_PREFIX) and os.path.isfile(path):
                with contextlib.suppress(FileNotFoundError):
                    os.remove(path)
                    removed.append(path)
    return removed
