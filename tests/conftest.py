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


@pytest.fixture
def tmpfs(tmp_path):
    """Factory: a fresh tmpfs mount point of `size` bytes (optionally read-only), unmounted
    after the test; None where mounting is not allowed (not root, no CAP_SYS_ADMIN): tests
    then inject the error instead."""
    mounted = []

    def make(size, read_only=False):
        point = tmp_path / f"tmpfs{len(mounted)}"
        point.mkdir()
        options = f"size={size}" + (",ro" if read_only else "")
        if os.geteuid() != 0 or subprocess.run(
                ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)],
                capture_output=True).returncode:
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
