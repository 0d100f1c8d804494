"""Resuming. tf_melgan.resume reports the settings changed since the model dir's config
(another architecture is refused: test_train.py, through run()).

Interrupted training resumes exactly: a run killed with SIGKILL, or stopped with SIGTERM
(which saves a checkpoint at the current step and exits with 143), then rerun with the same
command, ends with the same weights as an uninterrupted run of the same length.

Each run is a `python -m tf_melgan.train` subprocess of a tiny model (STEPS steps, a
checkpoint every 2 steps, epochs of 3 steps so resumes land mid-epoch as well).
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import FAST, ROOT, TINY, data_dir, make_trained_dir
from tf_melgan.resume import check_resume_config

STEPS = 8
OVERRIDES = TINY + [
    f"training.steps={STEPS}",
    "training.steps_per_epoch=3",
    "training.checkpoint_every=2",
    "training.keep_checkpoints=10",
    "training.sample_every=1000",
    "data.validation_clips=1",
]
# Same process layout and data, restored state: the measured difference is exactly 0.
ATOL = 1e-6
TIMEOUT = 240


def env():
    e = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="-1")
    e.pop("TF_CONFIG", None)
    return e


def command(model_dir):
    cmd = [sys.executable, "-m", "tf_melgan.train", "--config", "configs/base.yaml",
           "--model_dir", str(model_dir), "--verbose", "0", "--strategy", "default"]
    for override in OVERRIDES + [f"data.path={data_dir()}"]:
        cmd += ["--set", override]
    return cmd


def start(model_dir, log_path):
    with open(log_path, "w") as log:
        proc = subprocess.Popen(command(model_dir), cwd=ROOT, env=env(), stdout=log,
                                stderr=subprocess.STDOUT)
    proc.log_path = log_path
    return proc


def log_text(proc):
    with open(proc.log_path, errors="replace") as f:
        return "".join(l for l in f if not l.startswith(("I0000", "W0000", "WARNING: All log")))


def finish(proc, expected_rc=0, timeout=TIMEOUT):
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        pytest.fail(f"timed out after {timeout} s:\n{log_text(proc)[-4000:]}")
    assert proc.returncode == expected_rc, log_text(proc)[-4000:]
    return log_text(proc)


def run(model_dir, log_path, expected_rc=0):
    return finish(start(model_dir, log_path), expected_rc)


def wait_for_first_checkpoint(proc, ckpt_dir, timeout=TIMEOUT):
    """Polls until the CheckpointManager has recorded a checkpoint (training is under way)."""
    state = os.path.join(ckpt_dir, "checkpoint")
    deadline = time.monotonic() + timeout
    while not os.path.exists(state):
        if proc.poll() is not None:
            pytest.fail(f"exited with {proc.returncode} before its first checkpoint:\n"
                        f"{log_text(proc)[-4000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            pytest.fail(f"no checkpoint after {timeout} s:\n{log_text(proc)[-4000:]}")
        time.sleep(0.02)


def checkpoint_steps(ckpt_dir):
    import tensorflow as tf
    state = tf.train.get_checkpoint_state(str(ckpt_dir))
    return [int(p.rsplit("-", 1)[1]) for p in state.all_model_checkpoint_paths] if state else []


def read_checkpoint(prefix):
    """{name: value} of every variable of a checkpoint but the save counter."""
    import tensorflow as tf
    reader = tf.train.load_checkpoint(str(prefix))
    return {name: reader.get_tensor(name) for name, _ in tf.train.list_variables(str(prefix))
            if name != "_CHECKPOINTABLE_OBJECT_GRAPH" and not name.startswith("save_counter")}


def iterations(variables):
    return int(variables["g_optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE"])


def assert_same_state(actual, expected, atol=ATOL):
    """Generator, discriminator, Adam slots and step counters all equal (within atol)."""
    assert sorted(actual) == sorted(expected)
    diff = 0.0
    for name in sorted(expected):
        a, e = actual[name], expected[name]
        assert a.shape == e.shape, name
        if np.issubdtype(e.dtype, np.floating):
            if e.size:
                diff = max(diff, float(np.max(np.abs(a.astype(np.float64) - e))))
            np.testing.assert_allclose(a, e, atol=atol, rtol=0, err_msg=name)
        else:
            np.testing.assert_array_equal(a, e, err_msg=name)
    print(f"max |diff| {diff:.3g} over {len(expected)} variables")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    model_dir = tmp_path_factory.mktemp("uninterrupted") / "model"
    run(model_dir, str(model_dir) + ".log")
    ckpt_dir = model_dir / "checkpoints"
    assert checkpoint_steps(ckpt_dir) == list(range(2, STEPS + 1, 2))
    final = read_checkpoint(ckpt_dir / f"ckpt-{STEPS}")
    assert iterations(final) == STEPS
    # Sanity check that the weights do depend on the step: the first checkpoint differs.
    first = read_checkpoint(ckpt_dir / "ckpt-2")
    assert any(not np.array_equal(first[n], final[n]) for n in final if "_trainable" in n)
    return final


def test_sigkill_then_rerun_matches_uninterrupted_run(tmp_path, uninterrupted):
    model_dir = tmp_path / "model"
    ckpt_dir = model_dir / "checkpoints"
    proc = start(model_dir, str(tmp_path / "killed.log"))
    wait_for_first_checkpoint(proc, ckpt_dir)
    proc.send_signal(signal.SIGKILL)
    finish(proc, expected_rc=-signal.SIGKILL)
    saved = checkpoint_steps(ckpt_dir)
    assert saved and saved[-1] < STEPS, saved  # really interrupted
    print(f"SIGKILL after checkpoints {saved}")

    log = run(model_dir, str(tmp_path / "resumed.log"))
    assert f"resumed from {ckpt_dir / f'ckpt-{saved[-1]}'}" in log, log[-3000:]
    assert f"training finished at step {STEPS} of {STEPS} (" in log
    assert checkpoint_steps(ckpt_dir)[-1] == STEPS
    assert_same_state(read_checkpoint(ckpt_dir / f"ckpt-{STEPS}"), uninterrupted)


def test_sigterm_saves_current_step_exits_143_and_rerun_continues(tmp_path, uninterrupted):
    model_dir = tmp_path / "model"
    ckpt_dir = model_dir / "checkpoints"
    proc = start(model_dir, str(tmp_path / "terminated.log"))
    wait_for_first_checkpoint(proc, ckpt_dir)
    proc.send_signal(signal.SIGTERM)
    log = finish(proc, expected_rc=128 + signal.SIGTERM)
    assert "SIGTERM received" in log
    stopped = int(re.search(f"training stopped at step (\\d+) of {STEPS} by SIGTERM ", log)[1])
    assert 2 <= stopped < STEPS, stopped
    print(f"SIGTERM: stopped at step {stopped}")
    # The checkpoint written on the way out is at the step where it stopped.
    assert checkpoint_steps(ckpt_dir)[-1] == stopped
    assert iterations(read_checkpoint(ckpt_dir / f"ckpt-{stopped}")) == stopped

    log = run(model_dir, str(tmp_path / "resumed.log"))
    assert f"resumed from {ckpt_dir / f'ckpt-{stopped}'}" in log, log[-3000:]
    assert f"training finished at step {STEPS} of {STEPS} (" in log
    assert f", resumed at step {stopped})" in log
    assert_same_state(read_checkpoint(ckpt_dir / f"ckpt-{STEPS}"), uninterrupted)


def test_other_changes_on_resume_are_reported(tiny_config, tmp_path):
    stats = np.stack([np.zeros(80), np.ones(80)]).astype(np.float32)
    np.save(tmp_path / "stats.npy", stats)
    np.save(tmp_path / "same_stats.npy", stats)
    config = tiny_config(*FAST, f"audio.stats_path={tmp_path / 'stats.npy'}")
    model_dir = make_trained_dir(tmp_path / "model", config)
    shutil.copy(tmp_path / "stats.npy", os.path.join(model_dir, "mel_stats.npy"))
    with open(os.path.join(model_dir, "config.yaml"), "w") as f:
        f.write(config.to_yaml().replace(str(tmp_path / "stats.npy"), "mel_stats.npy"))
    assert check_resume_config(config, model_dir) == []
    changed = tiny_config(*FAST, f"audio.stats_path={tmp_path / 'same_stats.npy'}",
                          "training.steps=20", "g_optimizer.learning_rate=0.0003",
                          "data.path=elsewhere")
    assert check_resume_config(changed, model_dir) == [
        "g_optimizer.learning_rate: 0.0001 -> 0.0003", "training.steps: 500000 -> 20",
        f"data.path: {config.data.path} -> elsewhere"]
