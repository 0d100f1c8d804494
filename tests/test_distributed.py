"""Distributed training gives the single-device result: MirroredStrategy over two logical CPU
devices, and MultiWorkerMirroredStrategy with two worker processes on 127.0.0.1.

Each run is a `python -m tf_melgan.train` subprocess (logical devices and TF_CONFIG must be set
before TensorFlow initialises) of a tiny model for STEPS steps at global batch 2; the tests
compare the checkpoints they leave behind, variable by variable.
"""

import json
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import ROOT, TINY, data_dir

STEPS = 3
OVERRIDES = TINY + [
    f"training.steps={STEPS}",
    f"training.steps_per_epoch={STEPS}",
    f"training.checkpoint_every={STEPS}",
    "training.sample_every=1000",
    "data.validation_clips=1",  # fewer held-out clips than replicas: must still work
]
# Summation order differs between one device and all-reduced replicas: after 3 steps the
# measured max |difference| is ~6e-7 (weights are O(0.01-1), one Adam step moves them 1e-4).
ATOL, RTOL = 1e-5, 1e-5
TIMEOUT = 240


def env():
    e = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="-1")
    e.pop("TF_CONFIG", None)
    return e


def train_args(model_dir, strategy, *extra):
    args = ["--config", "configs/base.yaml", "--model_dir", str(model_dir), "--verbose", "0",
            "--strategy", strategy]
    for override in OVERRIDES + [f"data.path={data_dir()}"]:
        args += ["--set", override]
    return args + list(extra)


def start(args, log_path, env_=None, code=None):
    """Starts the training CLI (or `python -c code` with the same flags) in the background."""
    cmd = [sys.executable] + (["-c", code] if code else ["-m", "tf_melgan.train"]) + args
    log = open(log_path, "w")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env_ or env(), stdout=log,
                            stderr=subprocess.STDOUT)
    proc.log_path = log_path
    log.close()
    return proc


def tail(path, n=40):
    with open(path, errors="replace") as f:
        lines = [l for l in f if not l.startswith(("I0000", "W0000", "WARNING: All log"))]
    return "".join(lines[-n:])


def wait_all(procs, timeout=TIMEOUT):
    """Waits for every process. As soon as one fails (its peers would wait for it in their
    collectives) or the time is up, kills them all and fails with their logs."""
    deadline = time.monotonic() + timeout
    try:
        while True:
            codes = [p.poll() for p in procs]
            failed = [p for p, rc in zip(procs, codes) if rc not in (None, 0)]
            if failed:
                pytest.fail("\n".join(f"exit code {p.returncode}, log {p.log_path}:\n"
                                      f"{tail(p.log_path)}" for p in failed))
            if all(rc == 0 for rc in codes):
                return
            if time.monotonic() > deadline:
                pytest.fail(f"timed out after {timeout} s:\n"
                            + "\n".join(f"--- {p.log_path}\n{tail(p.log_path)}" for p in procs))
            time.sleep(0.2)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def read_checkpoint(prefix):
    """{name: value} of every variable of a checkpoint but the save counter."""
    import tensorflow as tf
    reader = tf.train.load_checkpoint(prefix)
    return {name: reader.get_tensor(name) for name, _ in tf.train.list_variables(prefix)
            if name != "_CHECKPOINTABLE_OBJECT_GRAPH" and not name.startswith("save_counter")}


def final_checkpoint(ckpt_dir):
    import tensorflow as tf
    prefix = tf.train.latest_checkpoint(str(ckpt_dir))
    assert prefix is not None and prefix.endswith(f"ckpt-{STEPS}"), (ckpt_dir, prefix)
    return read_checkpoint(prefix)


def weight_names(variables):
    """Generator and discriminator weights (Checkpoint reaches them via the optimizers)."""
    names = [n for n in variables if "_optimizer/_trainable_variables/" in n]
    assert any(n.startswith("g_") for n in names) and any(n.startswith("d_") for n in names)
    return names


def max_abs_diff(a, b, names=None):
    names = names or sorted(a)
    return max(float(np.max(np.abs(a[n].astype(np.float64) - b[n]))) if a[n].size else 0.0
               for n in names)


def assert_same_training(actual, expected, atol=ATOL, rtol=RTOL):
    """Same variables; counters equal; weights and Adam slots equal within tolerance."""
    assert sorted(actual) == sorted(expected)
    for name in sorted(expected):
        a, e = actual[name], expected[name]
        assert a.shape == e.shape, name
        if np.issubdtype(e.dtype, np.floating):
            np.testing.assert_allclose(a, e, atol=atol, rtol=rtol, err_msg=name)
        else:
            np.testing.assert_array_equal(a, e, err_msg=name)
    for name in ("g_optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE",
                 "d_optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE"):
        assert int(actual[name]) == STEPS, name


@pytest.fixture(scope="module")
def initial_weights(tmp_path_factory):
    """The seeded initial weights trainer.run starts from, in the same checkpoint layout."""
    import keras
    import tensorflow as tf

    from tf_melgan.config import load_config
    from tf_melgan.model import MelGAN, make_optimizer
    config = load_config(os.path.join(ROOT, "configs", "base.yaml"),
                         OVERRIDES + [f"data.path={data_dir()}"])
    keras.utils.set_random_seed(config.training.seed)
    gan = MelGAN.from_config_dataclass(config)
    gan.compile(make_optimizer(config.g_optimizer), make_optimizer(config.d_optimizer))
    checkpoint = tf.train.Checkpoint(generator=gan.generator, discriminator=gan.discriminator,
                                     g_optimizer=gan.g_optimizer, d_optimizer=gan.d_optimizer)
    return read_checkpoint(checkpoint.write(str(tmp_path_factory.mktemp("init") / "init")))


@pytest.fixture(scope="module")
def single_device(tmp_path_factory):
    """Final variables of a one-device (default strategy) run: the reference."""
    model_dir = tmp_path_factory.mktemp("single") / "model"
    proc = start(train_args(model_dir, "default"), str(model_dir) + ".log")
    wait_all([proc])
    return final_checkpoint(model_dir / "checkpoints")


def assert_trained_from(final, initial, steps=STEPS, lr=1e-4):
    """Training moved (nearly) every weight, by about `steps` Adam steps from `initial`."""
    names = weight_names(final)
    changes = {n: float(np.max(np.abs(final[n] - initial[n]))) for n in names}
    moved = [n for n in names if changes[n] > 0]
    # A few discriminator biases get exactly zero hinge-loss gradient at initialisation.
    assert len(moved) >= 0.9 * len(names), f"only {len(moved)} of {len(names)} weights changed"
    assert lr / 10 < max(changes.values()) < 20 * steps * lr, max(changes.values())


def test_mirrored_two_cpu_replicas_match_one_device(tmp_path, single_device, initial_weights):
    model_dir = tmp_path / "mirrored"
    proc = start(train_args(model_dir, "mirrored", "--cpu_replicas", "2"),
                 str(tmp_path / "mirrored.log"))
    wait_all([proc])
    assert "2 replica(s)" in tail(proc.log_path, 1000)
    mirrored = final_checkpoint(model_dir / "checkpoints")

    assert_trained_from(single_device, initial_weights)
    assert_trained_from(mirrored, initial_weights)
    print(f"mirrored vs one device: max |diff| weights "
          f"{max_abs_diff(mirrored, single_device, weight_names(mirrored)):.3g}, all "
          f"{max_abs_diff(mirrored, single_device):.3g}")
    assert_same_training(mirrored, single_device)
    assert os.path.isfile(model_dir / "best.json")  # validation ran on both replicas


def free_ports(n):
    socks = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


# Runs the CLI, but keeps a non-chief worker's scratch checkpoint (train.py deletes it at the
# end) by renaming it to MODEL_DIR/.worker_<i>.kept so the test can compare both workers.
KEEP_SCRATCH = ("import os, tensorflow as tf\n"
                "tf.io.gfile.rmtree = lambda path: os.rename(path, path.rstrip('/') + '.kept')\n"
                "from tf_melgan.train import cli\n"
                "cli()\n")


def test_multi_worker_two_processes_agree(tmp_path, single_device):
    model_dir = tmp_path / "model"  # shared by both workers, as on a shared filesystem
    ports = free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs = []
    for index in range(2):
        env_ = env()
        env_["TF_CONFIG"] = json.dumps({"cluster": cluster,
                                        "task": {"type": "worker", "index": index}})
        procs.append(start(train_args(model_dir, "multi_worker"),
                           str(tmp_path / f"worker{index}.log"), env_, code=KEEP_SCRATCH))
    wait_all(procs)

    chief = final_checkpoint(model_dir / "checkpoints")
    assert not os.path.exists(model_dir / ".worker_1"), "worker 1 left its scratch directory"
    worker1 = final_checkpoint(model_dir / ".worker_1.kept")
    assert not os.path.exists(model_dir / ".worker_0.kept")
    # All-reduced gradients are bit-identical on both workers, so are their updates.
    print(f"worker 1 vs chief: max |diff| {max_abs_diff(worker1, chief):.3g}; chief vs one "
          f"device: {max_abs_diff(chief, single_device):.3g}")
    assert_same_training(worker1, chief, atol=0, rtol=0)
    # Two workers with one replica each split the same global batches as one device.
    assert_same_training(chief, single_device)
    assert os.path.isfile(model_dir / "best.json")
    assert os.path.isfile(model_dir / "config.yaml")
