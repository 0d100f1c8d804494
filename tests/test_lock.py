"""One writer per model dir (tf_melgan.lock): a second training on the same --model_dir
exits with one line naming the holder's PID and writes nothing; a lock left by a process
killed with kill -9 never blocks."""

import os
import signal
import socket
import subprocess
import sys

import pytest

from conftest import ROOT, TINY, data_dir, one_line_error
from tf_melgan.lock import LOCK_NAME, ModelDirBusy, ModelDirLock

HOLDER = """
import sys, time
from tf_melgan.lock import ModelDirLock
ModelDirLock(sys.argv[1]).acquire()
print("locked", flush=True)
time.sleep(120)
"""


def hold(model_dir):
    """A process (no TensorFlow, so it starts fast) that holds the lock until killed."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(model_dir)], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "locked\n"
    return proc


def test_second_lock_in_one_process_is_refused_and_names_the_holder(tmp_path):
    with ModelDirLock(tmp_path / "m") as first:
        assert first.held
        with pytest.raises(ModelDirBusy) as info:
            ModelDirLock(tmp_path / "m").acquire()
    assert str(info.value) == (f"{tmp_path / 'm'} is in use by another training (PID "
                               f"{os.getpid()} on {socket.gethostname()}); stop it first or "
                               "use another --model_dir")
    ModelDirLock(tmp_path / "m").acquire().release()  # released on exit


def test_lock_of_a_killed_process_does_not_block(tmp_path):
    holder = hold(tmp_path)
    with pytest.raises(ModelDirBusy, match=f"PID {holder.pid} on "):
        ModelDirLock(tmp_path).acquire()
    holder.send_signal(signal.SIGKILL)
    assert holder.wait(timeout=30) == -signal.SIGKILL
    assert (tmp_path / LOCK_NAME).read_text().startswith(f"{holder.pid} ")  # stale file
    lock = ModelDirLock(tmp_path).acquire()  # ...which does not block
    assert (tmp_path / LOCK_NAME).read_text().startswith(f"{os.getpid()} ")
    lock.release()


def test_second_training_on_a_model_dir_exits_with_one_line(tmp_path):
    """The real CLI against a held dir: exit 1, one line naming the PID, nothing written."""
    model_dir = tmp_path / "model"
    holder = hold(model_dir)
    try:
        before = sorted(os.listdir(model_dir))
        cmd = [sys.executable, "-m", "tf_melgan.train", "--config", "configs/base.yaml",
               "--model_dir", str(model_dir), "--verbose", "0", "--strategy", "default"]
        for override in TINY + ["training.steps=2", f"data.path={data_dir()}"]:
            cmd += ["--set", override]
        result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=240,
                                env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
        assert result.returncode == 1, result.stderr[-3000:]
        line = one_line_error(result.stderr)
        assert line == (f"error: {model_dir} is in use by another training (PID {holder.pid} "
                        f"on {socket.gethostname()}); stop it first or use another "
                        "--model_dir")
        assert sorted(os.listdir(model_dir)) == before == [LOCK_NAME]
    finally:
        holder.kill()
        holder.wait()
