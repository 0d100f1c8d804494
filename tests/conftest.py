"""Shared fixtures: real audio (LJ Speech clips from ../shared, else the shipped demo corpus)
and tiny model configs so the suite stays fast."""

import contextlib
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LJ_MINI = os.path.normpath(os.path.join(ROOT, "..", "shared", "data", "ljspeech-mini"))
DEMO = os.path.join(ROOT, "demo_data")

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

TINY = [
    "generator.ngf=8",
    "discriminator.ndf=4",
    "discriminator.max_channels=32",
    "discriminator.num_scales=2",
    "training.batch_size=2",
    "training.segment_length=2048",
    "data.eval_segment_length=4096",
]
# A tiny model dir's bookkeeping: an epoch, a checkpoint per step, one held-out clip, no
# samples; training.steps stays the default.
FAST = ["training.steps_per_epoch=1", "training.checkpoint_every=1",
        "training.sample_every=1000", "data.validation_clips=1"]


def data_dir():
    """The LJ Speech mini set when ../shared is present (a fresh clone may lack it)."""
    return LJ_MINI if os.path.isdir(os.path.join(LJ_MINI, "wavs")) else DEMO


@pytest.fixture(scope="session")
def audio_dir():
    return data_dir()


@pytest.fixture(scope="session")
def clip_path(audio_dir):
    wavs = os.path.join(audio_dir, "wavs")
    return os.path.join(wavs, sorted(os.listdir(wavs))[0])


@pytest.fixture
def tiny_config():
    """Factory: a validated tiny Config, with extra 'a.b=v' overrides."""
    from tf_melgan.config import config_from_dict

    def make(*overrides, data=None):
        extra = [f"data.path={data or data_dir()}"]
        return config_from_dict({}, TINY + extra + list(overrides))

    return make


def make_trained_dir(model_dir, config, best_score=None):
    """A model dir as training leaves it at step 0: config.yaml and checkpoint ckpt-0; with
    `best_score`, also best_generator.weights.h5 and a best.json giving it that score."""
    import json

    import tensorflow as tf

    from tf_melgan.model import MelGAN, make_optimizer
    gan = MelGAN.from_config_dataclass(config)
    gan.compile(make_optimizer(config.g_optimizer), make_optimizer(config.d_optimizer))
    checkpoint = tf.train.Checkpoint(generator=gan.generator, discriminator=gan.discriminator,
                                     g_optimizer=gan.g_optimizer, d_optimizer=gan.d_optimizer)
    os.makedirs(model_dir)
    with open(os.path.join(model_dir, "config.yaml"), "w") as f:
        f.write(config.to_yaml())
    tf.train.CheckpointManager(checkpoint, os.path.join(model_dir, "checkpoints"),
                               max_to_keep=3).save(checkpoint_number=0)
    if best_score is not None:
        gan.generator.save_weights(os.path.join(model_dir, "best_generator.weights.h5"))
        with open(os.path.join(model_dir, "best.json"), "w") as f:
            json.dump({"val_mel_l1": best_score, "step": 0}, f)
    return str(model_dir)


@pytest.fixture(scope="session")
def python():
    return sys.executable


@pytest.fixture
def tmpfs(tmp_path):
    """Factory: a fresh tmpfs mount point of `size` bytes (optionally read-only), unmounted
    after the test; None where mounting is not allowed (not root, no CAP_SYS_ADMIN) or
    TF_MELGAN_NO_TMPFS=1: tests then inject the error instead."""
    mounted = []

    def make(size, read_only=False):
        point = tmp_path / f"tmpfs{len(mounted)}"
        point.mkdir()
        options = f"size={size}" + (",ro" if read_only else "")
        if os.geteuid() != 0 or os.environ.get("TF_MELGAN_NO_TMPFS") or subprocess.run(
                ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)],
                capture_output=True).returncode:
            point.rmdir()
            return None
        mounted.append(point)
        return point

    yield make
    for point in mounted:
        subprocess.run(["umount", "-l", str(point)], capture_output=True)


@pytest.fixture
def read_only_dir(tmpfs, tmp_path):
    """A folder nobody can create files in: a read-only tmpfs as root, else a mode-555
    folder (root ignores the mode, so that needs a non-root user)."""
    point = tmpfs("64k", read_only=True)
    if point is not None:
        yield point
        return
    if os.geteuid() == 0:
        pytest.skip("running as root without permission to mount a read-only tmpfs")
    folder = tmp_path / "read_only"
    folder.mkdir()
    folder.chmod(0o555)
    yield folder
    with contextlib.suppress(OSError):
        folder.chmod(0o755)


def one_line_error(stderr: str, prefix: str = "error:") -> str:
    """The single error line of a CLI's stderr, checked to be its last line, with no
    traceback before it."""
    assert "Traceback" not in stderr, stderr[-3000:]
    lines = [line for line in stderr.splitlines() if line.startswith(prefix)]
    assert len(lines) == 1, stderr[-3000:]
    assert lines[0] == stderr.rstrip("\n").splitlines()[-1], stderr[-3000:]
    return lines[0]


def cli_env(**extra):
    """The environment a user's shell gives a CLI: no TF_CPP_MIN_LOG_LEVEL (this conftest
    sets one for the test process), no debug switch."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("TF_CPP_MIN_LOG_LEVEL", "TF_MELGAN_DEBUG", "TF_CONFIG")}
    env.update(extra)
    return env


TRAINED_STEPS = 50
TRAINED_OVERRIDES = TINY + [f"training.steps={TRAINED_STEPS}",
                            f"training.steps_per_epoch={TRAINED_STEPS}",
                            f"training.checkpoint_every={TRAINED_STEPS}",
                            f"training.sample_every={TRAINED_STEPS}",
                            "data.validation_clips=2"]


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """A tiny training run of the CLI as under nohup / SLURM: stdout and stderr into one
    pipe (not a terminal), default verbosity. {'model_dir', 'log' (bytes), 'returncode',
    'exit_delay' (s from the last line to the process' end)}."""
    import subprocess
    import time

    model_dir = tmp_path_factory.mktemp("trained") / "model"
    cmd = [sys.executable, "-m", "tf_melgan.train", "--config", "configs/base.yaml",
           "--model_dir", str(model_dir)]
    for override in TRAINED_OVERRIDES + [f"data.path={data_dir()}"]:
        cmd += ["--set", override]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=cli_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    log, last = b"", time.monotonic()
    deadline = last + 600
    for line in proc.stdout:
        log, last = log + line, time.monotonic()
        if last > deadline:
            proc.kill()
            break
    proc.wait()
    with open(model_dir.parent / "train.log", "wb") as f:
        f.write(log)
    return {"model_dir": str(model_dir), "log": log, "returncode": proc.returncode,
            "exit_delay": time.monotonic() - last, "steps": TRAINED_STEPS}
