"""Shared fixtures: real audio (LJ Speech clips from ../shared, else the shipped demo corpus)
and tiny model configs so the suite stays fast."""

import os
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


@pytest.fixture(scope="session")
def python():
    return sys.executable


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
