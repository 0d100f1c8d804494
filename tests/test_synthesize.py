"""The synthesis CLI's output safety: a read-only or too-full place is refused before the
model loads, and a write that fails half-way (full disk) leaves no cut-off file: the output
path keeps its previous content. Errors are one line naming the path and the reason.
(Synthesis itself is tested in test_export.py.)"""

import errno
import os
import sys

import keras
import numpy as np
import pytest
import soundfile as sf

from conftest import one_line_error
from tf_melgan.atomic import TMP_PREFIX
from tf_melgan.config import config_from_dict
from tf_melgan.generator import Generator
from tf_melgan.synthesize import main

# The module itself: `tf_melgan.synthesize` as an attribute of the package can be the
# function of that name (tf_melgan/__init__.py exports it lazily).
synthesize_module = sys.modules["tf_melgan.synthesize"]

# A generator small enough to build in a second: hop 16, 16 mel bands.
SMALL = ["audio.n_fft=64", "audio.win_length=64", "audio.hop_length=16", "audio.n_mels=16",
         "generator.ratios=[4,4]", "generator.n_residual_layers=1", "generator.ngf=4"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("model")
    config = config_from_dict({}, SMALL)
    keras.utils.set_random_seed(0)
    g = Generator.from_config_dataclass(config.generator, config.audio.n_mels, name="generator")
    g.build((None, None, config.audio.n_mels))
    (path / "config.yaml").write_text(config.to_yaml())
    g.save_weights(str(path / "best_generator.weights.h5"))
    return str(path)


@pytest.fixture
def mel_path(tmp_path):
    """5000 frames: 80000 samples, a 160 kB 16-bit wav."""
    mel = np.clip(np.random.default_rng(0).normal(-2, 1, (5000, 16)), -5, 1).astype(np.float32)
    np.save(tmp_path / "mel.npy", mel)
    return str(tmp_path / "mel.npy")


def synthesize(model_dir, mel_path, output, capsys):
    status = main(["synthesize", "--model", model_dir, "--input", mel_path, "--output",
                       str(output), "--verbose", "0"])
    return status, capsys.readouterr().err


def test_writes_the_whole_file_and_no_temporary(model_dir, mel_path, tmp_path, capsys):
    out = tmp_path / "out" / "speech.wav"
    assert synthesize(model_dir, mel_path, out, capsys) == (0, "")
    assert sf.info(str(out)).frames == 5000 * 16
    assert os.listdir(out.parent) == ["speech.wav"]


@pytest.mark.parametrize("name,content,message", [
    ("garbage.wav", b"not audio at all", "not a readable audio file"),
    ("mel.npy", b"not a numpy file", "not a .npy file (no NumPy header)"),
])
def test_an_unreadable_input_fails_before_the_model_loads(model_dir, tmp_path, monkeypatch,
                                                          capsys, name, content, message):
    def no_loading(*args, **kwargs):
        raise AssertionError("the model was loaded before the input was checked")

    monkeypatch.setattr(synthesize_module, "load_vocoder", no_loading)
    bad = tmp_path / name
    bad.write_bytes(content)
    status, err = synthesize(model_dir, str(bad), tmp_path / "out.wav", capsys)
    assert status == 1
    line = one_line_error(err)
    assert line.startswith(f"error: {bad}: {message}"), line


@pytest.mark.parametrize("folder", [False, True])
def test_read_only_output_fails_before_the_model_loads(model_dir, mel_path, read_only_dir,
                                                       monkeypatch, capsys, folder):
    def no_loading(*args, **kwargs):
        raise AssertionError("the model was loaded before the output was checked")

    monkeypatch.setattr(synthesize_module, "load_vocoder", no_loading)
    out = read_only_dir / "speech.wav"
    status, err = synthesize(model_dir, os.path.dirname(mel_path) if folder else mel_path,
                             read_only_dir if folder else out, capsys)
    assert status == 1
    reason = {os.strerror(errno.EROFS), os.strerror(errno.EACCES)}
    line = one_line_error(err)
    probe = read_only_dir / "probe.wav" if folder else out
    assert line in {f"error: {probe}: {r}" for r in reason}, line
    assert os.listdir(read_only_dir) == []


def test_too_little_space_is_refused_before_synthesis(model_dir, mel_path, tmpfs, capsys):
    disk = tmpfs("64k")
    if disk is None:
        pytest.skip("needs a small tmpfs (root); the injected failure below runs anyway")
    out = disk / "speech.wav"
    status, err = synthesize(model_dir, mel_path, out, capsys)
    assert status == 1
    assert one_line_error(err) == (f"error: {out}: not enough space (needs about 0.16 MB, "
                                   "0.07 MB free)")
    assert os.listdir(disk) == []


def test_a_write_failing_half_way_keeps_the_previous_file(model_dir, mel_path, tmp_path,
                                                          monkeypatch, capsys):
    """The disk fills up during the write (injected: libsndfile writes part of the file,
    then the OS says ENOSPC)."""
    out = tmp_path / "speech.wav"
    sf.write(str(out), np.full(100, 0.25, np.float32), 22050)
    previous = out.read_bytes()
    real_write = sf.write

    def write_then_fail(path, data, *args, **kwargs):
        real_write(path, data[: len(data) // 3], *args, **kwargs)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(sf, "write", write_then_fail)
    status, err = synthesize(model_dir, mel_path, out, capsys)
    assert status == 1
    line = one_line_error(err)
    assert line.startswith(f"error: {out}: no space left on device (needs about 0.16 MB, ")
    assert out.read_bytes() == previous
    assert not [n for n in os.listdir(tmp_path) if n.startswith(TMP_PREFIX)]


def _cli(*args):
    import subprocess

    from conftest import ROOT, cli_env
    return subprocess.run([sys.executable, "-m", "tf_melgan.synthesize", *args],
                          capture_output=True, text=True, cwd=ROOT, env=cli_env(),
                          timeout=300)


def test_too_short_audio_is_one_line_naming_the_file(model_dir, tmp_path):
    short = tmp_path / "short.wav"
    sf.write(short, np.full(10, 0.1, np.float32), 22050)
    done = _cli("--model", model_dir, "--input", str(short), "--output",
                str(tmp_path / "out.wav"))
    assert done.returncode == 1
    line = one_line_error(done.stderr)
    assert str(short) in line and "too short" in line and "at least 4 frames" in line
    assert not (tmp_path / "out.wav").exists()


def test_folder_mode_names_what_it_skipped_and_counts_what_it_wrote(model_dir, tmp_path,
                                                                    clip_path):
    folder = tmp_path / "in"
    folder.mkdir()
    sf.write(folder / "a_short.wav", np.full(10, 0.1, np.float32), 22050)
    data, rate = sf.read(clip_path)
    sf.write(folder / "b_good.wav", data[:22050], rate)
    done = _cli("--model", model_dir, "--input", str(folder), "--output",
                str(tmp_path / "out"))
    assert done.returncode == 1  # one failed
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "a_short.wav" in errors[0] and "skipped" in errors[0]
    assert "Traceback" not in done.stderr
    assert f"synthesized 1 of 2 files into {tmp_path / 'out'}" in done.stdout + done.stderr
    assert sorted(os.listdir(tmp_path / "out")) == ["b_good.wav"]


def test_a_mel_made_at_another_rate_or_hop_is_one_line_naming_what_the_model_expects(
        model_dir, mel_path, tmp_path, capsys):
    side = os.path.splitext(mel_path)[0] + ".json"
    with open(side, "w") as f:
        f.write('{"audio": {"sample_rate": 16000, "hop_length": 16}}')
    status, err = synthesize(model_dir, mel_path, tmp_path / "a.wav", capsys)
    assert status != 0 and not (tmp_path / "a.wav").exists()
    line = one_line_error(err)
    assert "made at 16000 Hz, hop 16" in line and "expects 22050 Hz, hop 16" in line
    with open(side, "w") as f:  # a value that is not a rate is refused too, naming the file
        f.write('{"sample_rate": "22k", "hop_length": 16}')
    status, err = synthesize(model_dir, mel_path, tmp_path / "a.wav", capsys)
    assert status != 0 and not (tmp_path / "a.wav").exists()
    assert f"{side}: sample_rate '22k', expected a positive integer" in one_line_error(err)
    with open(side, "w") as f:  # the model's own rate and hop pass
        f.write('{"sample_rate": 22050, "hop_length": 16}')
    assert synthesize(model_dir, mel_path, tmp_path / "b.wav", capsys) == (0, "")


def test_audio_at_another_rate_is_resampled_and_says_so_in_one_line(model_dir, tmp_path,
                                                                     capsys):
    t = np.arange(48000) / 48000.0
    sf.write(str(tmp_path / "in.wav"), 0.5 * np.sin(2 * np.pi * 220 * t), 48000)
    status, err = synthesize(model_dir, str(tmp_path / "in.wav"), tmp_path / "o.wav", capsys)
    assert status == 0
    assert err.strip().splitlines() == [
        f"note: {tmp_path / 'in.wav'}: 48000 Hz, resampled to 22050 Hz (the model's rate)"]
    assert abs(sf.info(str(tmp_path / "o.wav")).frames - 22050) <= 16
