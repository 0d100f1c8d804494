"""One writer per model dir: an exclusive lock on MODEL_DIR/.lock.

`flock` locks belong to the open file, so the kernel releases them when the process ends in
any way (kill -9 included): a lock left by a dead process never blocks. The holder writes
its PID and host into the file so that a refused run can say who holds it. No TensorFlow.
"""

from __future__ import annotations

import os
import socket

from tf_melgan.errors import TfMelganError

try:
    import fcntl
except ImportError:  # not POSIX: no locking (the README asks for Linux)
    fcntl = None

LOCK_NAME = ".lock"


class ModelDirBusy(TfMelganError, RuntimeError):
    """Another process holds the model dir's lock; the message names its PID."""


class ModelDirLock:
    """Holds MODEL_DIR/.lock until `release()` (or the process ends)."""

    def __init__(self, model_dir: str):
        self.model_dir = os.fspath(model_dir)
        self.path = os.path.join(self.model_dir, LOCK_NAME)
        self._fd = None

    def acquire(self) -> "ModelDirLock":
        """Takes the lock without waiting. Raises ModelDirBusy when another process (or
        another ModelDirLock in this one) holds it, OSError when the dir is not writable."""
        os.makedirs(self.model_dir, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 200).decode("utf-8", "replace").strip() or "unknown"
                os.close(fd)
                raise ModelDirBusy(f"{self.model_dir} is in use by another training (PID "
                                   f"{holder}); stop it first or use another --model_dir") \
                    from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} on {socket.gethostname()}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the last descriptor drops the flock
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
