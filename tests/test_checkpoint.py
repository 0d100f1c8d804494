"""remove_checkpoint_debris: what interrupted saves leave (a `ckpt-N_temp/` folder, a 0-byte
`.index` with its orphaned data file, TensorFlow's `checkpoint.tmp...` state file) is
removed; every complete checkpoint, listed or not, is kept and still restores. A cut-off
best generator is a one-line ModelDirError, not an HDF5 traceback.

tf_melgan.checkpoint: which generator of a model dir is used (best or latest, its step
and validation score), as export, convert.py and synthesize report it."""

import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from tf_melgan.checkpoint import (GeneratorSource, ModelDirError, generator_source,
                                  load_generator, remove_checkpoint_debris)


def test_debris_of_interrupted_saves_is_removed_and_checkpoints_kept(tmp_path):
    ckpt_dir = str(tmp_path / "checkpoints")
    v = tf.Variable(np.arange(1000, dtype=np.float32))
    checkpoint = tf.train.Checkpoint(v=v)
    manager = tf.train.CheckpointManager(checkpoint, ckpt_dir, max_to_keep=5)
    manager.save(checkpoint_number=1)
    v.assign_add(tf.ones(1000))
    manager.save(checkpoint_number=2)
    v.assign_add(tf.ones(1000))
    checkpoint.write(os.path.join(ckpt_dir, "ckpt-3"))  # complete, never listed: kept
    manager.save(checkpoint_number=7)  # a kill while the manager swept an old checkpoint:
    os.remove(os.path.join(ckpt_dir, "ckpt-7.index"))  # still listed, index already gone
    manager.save(checkpoint_number=8)
    # The debris: a staging folder, an empty index with its data, a temporary state file.
    os.makedirs(os.path.join(ckpt_dir, "ckpt-4_temp"))
    with open(os.path.join(ckpt_dir, "ckpt-4_temp", "part-00000-of-00001.index"), "wb") as f:
        f.write(b"partial")
    open(os.path.join(ckpt_dir, "ckpt-5.index"), "wb").close()
    with open(os.path.join(ckpt_dir, "ckpt-5.data-00000-of-00001"), "wb") as f:
        f.write(b"\0" * 4000)
    with open(os.path.join(ckpt_dir, "ckpt-6.data-00000-of-00001"), "wb") as f:  # no index
        f.write(b"\0" * 4000)
    with open(os.path.join(ckpt_dir, "checkpoint.tmp0123abcd"), "w") as f:
        f.write("model_checkpoint_path: ")

    removed = remove_checkpoint_debris(ckpt_dir)
    assert sorted(os.path.basename(p) for p in removed) == [
        "checkpoint.tmp0123abcd", "ckpt-4_temp", "ckpt-5.data-00000-of-00001", "ckpt-5.index",
        "ckpt-6.data-00000-of-00001", "ckpt-7.data-00000-of-00001"]
    assert sorted(os.listdir(ckpt_dir)) == [
        "checkpoint", "ckpt-1.data-00000-of-00001", "ckpt-1.index",
        "ckpt-2.data-00000-of-00001", "ckpt-2.index",
        "ckpt-3.data-00000-of-00001", "ckpt-3.index",
        "ckpt-8.data-00000-of-00001", "ckpt-8.index"]
    assert tf.train.latest_checkpoint(ckpt_dir) == os.path.join(ckpt_dir, "ckpt-8")
    for step, offset in ((1, 0), (2, 1), (3, 2), (8, 2)):
        restored = tf.Variable(np.zeros(1000, np.float32))
        tf.train.Checkpoint(v=restored).restore(os.path.join(ckpt_dir, f"ckpt-{step}"))
        np.testing.assert_array_equal(restored.numpy(), np.arange(1000) + offset)
    assert remove_checkpoint_debris(ckpt_dir) == []  # nothing left to remove
    assert remove_checkpoint_debris(str(tmp_path / "none")) == []


@pytest.mark.parametrize("size", [0, 96])
def test_a_cut_off_best_generator_is_a_one_line_error(tmp_path, size):
    """What a kill during the old, non-atomic best-model write left (0 or 96 bytes)."""
    from tf_melgan.config import config_from_dict
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "config.yaml").write_text(config_from_dict({}, ["generator.ngf=4"]).to_yaml())
    with open(model_dir / "best_generator.weights.h5", "wb") as f:
        f.write(b"\x89HDF\r\n\x1a\n" * (size // 8))
    with pytest.raises(ModelDirError) as info:
        load_generator(str(model_dir))
    message = str(info.value)
    assert message.startswith(f"{model_dir / 'best_generator.weights.h5'} is unreadable (")
    assert message.endswith("); the latest checkpoint may still load (--which latest)")
    assert "\n" not in message


@pytest.fixture
def model_dir(trained_run, tmp_path):
    """A copy of the tiny trained model dir (best at step 50, checkpoint ckpt-50)."""
    return shutil.copytree(trained_run["model_dir"], tmp_path / "model")


def best_json(model_dir):
    with open(os.path.join(model_dir, "best.json")) as f:
        return json.load(f)


def test_best_and_latest_of_a_trained_model_dir(model_dir):
    score = best_json(model_dir)["val_mel_l1"]
    best = generator_source(str(model_dir), "best")
    assert best == GeneratorSource("best", f"{model_dir}/best_generator.weights.h5", 50, score,
                                   (50, score))
    assert best.describe() == f"best generator (step 50, validation log-mel L1 {score:.4f})"
    latest = generator_source(str(model_dir), "latest")
    assert (latest.which, latest.path, latest.step) == ("latest",
                                                        f"{model_dir}/checkpoints/ckpt-50", 50)
    # The latest checkpoint is the best step here: its score is known.
    assert latest.describe() == f"latest checkpoint (step 50, validation log-mel L1 {score:.4f})"


def test_latest_past_the_best(model_dir):
    with open(model_dir / "best.json", "w") as f:
        json.dump({"val_mel_l1": 0.5, "step": 30}, f)
    assert generator_source(str(model_dir), "latest").describe() == (
        "latest checkpoint (step 50; the best is step 30, validation log-mel L1 0.5000)")


def test_best_falls_back_to_the_latest_checkpoint(model_dir):
    os.remove(model_dir / "best_generator.weights.h5")
    os.remove(model_dir / "best.json")
    source = generator_source(str(model_dir), "best")
    assert source.which == "latest" and source.step == 50
    assert source.describe() == "latest checkpoint (step 50; not validated yet)"
    shutil.rmtree(model_dir / "checkpoints")
    with pytest.raises(ModelDirError, match="has no checkpoint yet"):
        generator_source(str(model_dir), "best")


def test_weights_without_a_score(model_dir):
    os.remove(model_dir / "best.json")
    assert generator_source(str(model_dir)).describe() == "best generator (step ?; not " \
                                                          "validated yet)"
