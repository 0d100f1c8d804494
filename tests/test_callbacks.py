"""The training callbacks' guarantees: a kill -9 in the middle of writing the best generator
leaves the previous best (and its best.json) whole and the dir resumable; nothing
non-finite is ever saved; an unreadable best.json does not stop a resume; a second Ctrl-C
aborts with one line, no traceback."""

import json
import logging
import math
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from conftest import FAST, ROOT, TINY, make_trained_dir, one_line_error
from tf_melgan.atomic import TMP_PREFIX
from tf_melgan.callbacks import BestGenerator, TrainingError, save_checkpoint
from tf_melgan.checkpoint import load_generator

# The training CLI, with HDF5's create_dataset patched to kill -9 this very process as soon
# as the best generator's file (or its temporary) has received its first weight tensor.
KILLED_DURING_BEST_WRITE = """
import os, signal, sys
import h5py
create = h5py.Group.create_dataset
def create_then_die(self, *args, **kwargs):
    out = create(self, *args, **kwargs)
    if "best_generator" in os.path.basename(self.file.filename):
        self.file.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    return out
h5py.Group.create_dataset = create_then_die
from tf_melgan.train import cli
sys.argv[0] = "train"
cli()
"""


def read(path):
    with open(path, "rb") as f:
        return f.read()


def test_kill_9_while_the_best_generator_is_written(tiny_config, tmp_path, caplog):
    config = tiny_config(*FAST, "training.steps=2")
    # The previous best has a poor score, so step 1's validation replaces it.
    model_dir = make_trained_dir(tmp_path / "model", config, best_score=1e9)
    best_h5, best_json = (os.path.join(model_dir, n) for n in ("best_generator.weights.h5",
                                                               "best.json"))
    old_h5, old_json = read(best_h5), read(best_json)
    cmd = [sys.executable, "-c", KILLED_DURING_BEST_WRITE, "--model_dir", model_dir,
           "--verbose", "0", "--strategy", "default"]  # resumes with the dir's config.yaml
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert result.returncode == -signal.SIGKILL, result.stderr[-3000:]
    assert read(best_h5) == old_h5 and read(best_json) == old_json
    (debris,) = [n for n in os.listdir(model_dir) if n.startswith(TMP_PREFIX)]
    assert debris.endswith("-best_generator.weights.h5")  # the write that was cut off
    load_generator(model_dir, "best")  # what synthesize, export and convert read

    # The next start removes the cut-off temporary, resumes from step 1's checkpoint and
    # writes a new best.
    from tf_melgan.trainer import run
    with caplog.at_level(logging.INFO, logger="tf_melgan"):
        summary = run(config, model_dir, verbose=0)
    assert summary["step"] == 2
    messages = [r.getMessage() for r in caplog.records]
    assert f"resumed from {os.path.join(model_dir, 'checkpoints', 'ckpt-1')}" in messages
    assert f"removed 1 leftover(s) of interrupted saves: {debris}" in messages
    assert not [n for n in os.listdir(model_dir) if n.startswith(TMP_PREFIX)]
    with open(best_json) as f:
        best = json.load(f)
    assert best["step"] in (1, 2) and best["val_mel_l1"] < 1e9
    assert read(best_h5) != old_h5


@pytest.fixture(scope="module")
def gan():
    from tf_melgan.config import config_from_dict
    from tf_melgan.model import MelGAN, make_optimizer
    config = config_from_dict({}, TINY)
    model = MelGAN.from_config_dataclass(config)
    model.compile(make_optimizer(config.g_optimizer), make_optimizer(config.d_optimizer))
    return model


def test_non_finite_weights_are_never_saved(gan, tmp_path):
    checkpoint = tf.train.Checkpoint(generator=gan.generator, discriminator=gan.discriminator)
    manager = tf.train.CheckpointManager(checkpoint, str(tmp_path / "checkpoints"), 3)
    assert save_checkpoint(manager, gan, 1).endswith("ckpt-1")
    best = BestGenerator(str(tmp_path), gan)
    weight = gan.generator.trainable_weights[0]
    saved = weight.numpy()
    try:
        weight.assign(np.where(np.arange(saved.size).reshape(saved.shape) == 7, np.nan, saved))
        with pytest.raises(TrainingError) as info:
            save_checkpoint(manager, gan, 2)
        assert str(info.value) == (f"the weights at step 2 are not finite: not saved, "
                                   f"stopped; the last checkpoint, {tmp_path}/checkpoints/"
                                   "ckpt-1, is intact")
        best.on_epoch_end(0, {"val_mel_l1": 0.5})  # a fine score, NaN weights: not saved
        assert best.best == math.inf
    finally:
        weight.assign(saved)
    best.on_epoch_end(0, {"val_mel_l1": float("nan")})  # a NaN score: not saved
    assert sorted(os.listdir(tmp_path / "checkpoints")) == [
        "checkpoint", "ckpt-1.data-00000-of-00001", "ckpt-1.index"]
    assert sorted(os.listdir(tmp_path)) == ["checkpoints"]
    best.on_epoch_end(0, {"val_mel_l1": 0.5})
    assert sorted(os.listdir(tmp_path)) == ["best.json", "best_generator.weights.h5",
                                            "checkpoints"]
    assert json.loads((tmp_path / "best.json").read_text()) == {"val_mel_l1": 0.5, "step": 0}


@pytest.mark.parametrize("text", ["", "{\"val_mel_l1\":", "[]"])
def test_an_unreadable_best_json_is_a_warning(gan, tmp_path, caplog, text):
    """Older versions could leave an empty best.json (a kill between open and write)."""
    (tmp_path / "best.json").write_text(text)
    with caplog.at_level(logging.WARNING, logger="tf_melgan"):
        best = BestGenerator(str(tmp_path), gan)
    assert best.best == math.inf
    (message,) = [r.getMessage() for r in caplog.records]
    assert message.startswith(f"{tmp_path / 'best.json'} is unreadable (")
    assert message.endswith("): the next validation result replaces the best generator")


INTERRUPTED = """
import time
from tf_melgan.callbacks import GracefulStop
GracefulStop().on_train_begin()
print("training", flush=True)
while True:
    time.sleep(0.01)
"""


def test_second_ctrl_c_aborts_with_one_line_and_status_130():
    proc = subprocess.Popen([sys.executable, "-c", INTERRUPTED], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert proc.stdout.readline() == "training\n"
    proc.send_signal(signal.SIGINT)
    while "SIGINT received" not in proc.stderr.readline():  # the first one is handled
        pass
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGINT
    assert one_line_error(stderr) == ("error: interrupted twice: aborted without saving; "
                                      "the last checkpoint is intact")
