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
