"""What `trainer.run` does with a model dir it cannot or must not use: another architecture
(refused before anything is written), a loss that turns NaN (stops, nothing non-finite
saved), a full disk (one line with the space needed; the last checkpoint intact). Each
runs in this process on the tiny model (the CLI's one-line output of the same errors is
checked in test_lock.py)."""

import os
import re
import shutil

import numpy as np
import pytest
import tensorflow as tf

from conftest import FAST, make_trained_dir
from tf_melgan.callbacks import TrainingError
from tf_melgan.checkpoint import load_generator
from tf_melgan.trainer import run


def snapshot(folder):
    """{relative path: bytes} of every file below `folder`."""
    files = {}
    for root, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                files[os.path.relpath(path, folder)] = f.read()
    return files


def checkpoint_values(prefix):
    reader = tf.train.load_checkpoint(prefix)
    return {name: reader.get_tensor(name) for name, _ in tf.train.list_variables(prefix)
            if name != "_CHECKPOINTABLE_OBJECT_GRAPH"}


def test_another_architecture_is_refused_before_anything_is_written(tiny_config, tmp_path):
    model_dir = make_trained_dir(tmp_path / "model", tiny_config(*FAST))
    before = snapshot(model_dir)
    with pytest.raises(TrainingError) as info:
        run(tiny_config(*FAST, "generator.ngf=16", "discriminator.ndf=8"), model_dir,
            verbose=0)
    assert str(info.value) == (
        f"{model_dir} holds a model of another architecture: generator.ngf 8 there, 16 now; "
        "discriminator.ndf 4 there, 8 now (resume without changing these, or use another "
        "--model_dir)")
    after = snapshot(model_dir)
    assert after.pop(".lock").startswith(f"{os.getpid()} on ".encode())  # only the lock
    assert after == before
    generator, config = load_generator(model_dir, "latest")  # the dir is still usable
    assert config.generator.ngf == 8 and generator.count_params() > 0


def test_a_nan_loss_stops_training_and_nothing_non_finite_is_saved(tiny_config, tmp_path):
    """A discriminator learning rate of 1e30 makes D's outputs overflow at step 2: training
    stops there with one line; step 1's checkpoint and best generator are all there is."""
    model_dir = str(tmp_path / "model")
    with pytest.raises(TrainingError) as info:
        run(tiny_config(*FAST, "training.steps=5", "d_optimizer.learning_rate=1e30"),
            model_dir, verbose=0)
    last = os.path.join(model_dir, "checkpoints", "ckpt-1")
    message = str(info.value)
    assert re.fullmatch(rf"non-finite loss at step 2 \((\w+ (nan|inf|-inf)(, )?)+\): stopped "
                        rf"without saving it; the last checkpoint, {re.escape(last)}, is "
                        r"intact \(lower the learning rates or check the data, then rerun "
                        r"to resume\)", message), message
    assert "\n" not in message
    assert tf.train.get_checkpoint_state(os.path.join(model_dir, "checkpoints")) \
        .all_model_checkpoint_paths == [last]
    values = checkpoint_values(last)
    assert all(np.all(np.isfinite(v)) for v in values.values() if v.dtype.kind == "f")
    assert int(values["g_optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE"]) == 1
    with open(os.path.join(model_dir, "best.json")) as f:
        assert f.read().endswith('"step": 1}')
    generator, _ = load_generator(model_dir, "best", fold=False)
    assert all(np.all(np.isfinite(w.numpy())) for w in generator.weights)


def test_full_disk_while_training_is_one_line_and_keeps_the_last_checkpoint(
        tiny_config, tmp_path, tmpfs, monkeypatch):
    """The model dir on a tmpfs with room for half a checkpoint more than it holds (or,
    without mount rights, the same TensorFlow error injected at the save)."""
    config = tiny_config(*FAST, "training.steps=3")
    built = make_trained_dir(tmp_path / "built", config)
    ckpt_bytes = sum(os.path.getsize(os.path.join(built, "checkpoints", f"ckpt-0.{ext}"))
                     for ext in ("index", "data-00000-of-00001"))
    used = sum(-(-len(b) // 4096) * 4096 for b in snapshot(built).values())
    disk = tmpfs(used + 64 * 1024 + ckpt_bytes // 2)
    if disk is None:
        disk = tmp_path / "disk"
        save = tf.train.CheckpointManager.save

        def full(self, checkpoint_number=None, **kwargs):
            if checkpoint_number == 0:
                return save(self, checkpoint_number, **kwargs)
            temp = os.path.join(self.directory, f"ckpt-{checkpoint_number}_temp")
            os.makedirs(temp)
            raise tf.errors.ResourceExhaustedError(
                None, None, f"{temp}/part-00000-of-00001.data-00000-of-00001.tempstate1; "
                            "No space left on device [Op:SaveV2]")

        monkeypatch.setattr(tf.train.CheckpointManager, "save", full)
    model_dir = str(disk / "model")
    shutil.copytree(built, model_dir)
    last = os.path.join(model_dir, "checkpoints", "ckpt-0")
    before = checkpoint_values(last)

    with pytest.raises(TrainingError) as info:
        run(config, model_dir, verbose=0)
    found = re.fullmatch(
        rf"cannot save checkpoint 1: {re.escape(model_dir)}/checkpoints/ckpt-1: no space left "
        r"on device \(needs about (\d+\.\d\d) MB, (\d+\.\d\d) ([MG])B free\); the last "
        rf"checkpoint, {re.escape(last)}, is intact", str(info.value))
    assert found, str(info.value)
    assert float(found[1]) == pytest.approx(ckpt_bytes / 1e6, abs=0.005)  # ckpt-0's size
    if disk.name.startswith("tmpfs"):  # really full
        assert found[3] == "M" and float(found[2]) < float(found[1])
    ckpt_dir = os.path.join(model_dir, "checkpoints")
    assert sorted(os.listdir(ckpt_dir)) == [  # the partial save (ckpt-1_temp/) is gone
        "checkpoint", "ckpt-0.data-00000-of-00001", "ckpt-0.index"]
    after = checkpoint_values(last)
    assert sorted(after) == sorted(before)
    for name, value in before.items():
        np.testing.assert_array_equal(after[name], value, err_msg=name)
