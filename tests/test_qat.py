"""tf_melgan.qat: calibration, range files, quantization-aware training and conversion,
against LiteRT (the fake-quant primitives: test_fake_quant.py)."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from tf_melgan import qat
from tf_melgan.fake_quant import TANH_RANGE

SNAKE_NEAREST = ["generator.activation=snake", "generator.upsampling=nearest"]


def make_qat_dir(root, overrides=()):
    """A tiny Snake + nearest model dir (random weights) with calibrated QAT ranges."""
    from tests.conftest import TINY, data_dir, make_trained_dir
    from tf_melgan.checkpoint import load_generator
    from tf_melgan.config import config_from_dict
    from tf_melgan.data import find_audio_files, split_files
    from tf_melgan.deploy.convert.data import calibration_mels
    config = config_from_dict({}, TINY + SNAKE_NEAREST + ["data.validation_clips=2",
                                                          f"data.path={data_dir()}",
                                                          *overrides])
    model_dir = make_trained_dir(root / "model", config, 1.0)
    generator, config = load_generator(model_dir, fold=False, quantize=True)
    train, _ = split_files(find_audio_files(config.data.path), 2)
    qat.calibrate(generator, calibration_mels(train[:4], config.audio, 4, 64, False,
                                              (0.3, 1.0)))
    qat.save_ranges(generator, model_dir)
    return model_dir


@pytest.fixture(scope="module")
def qat_dir(tmp_path_factory):
    return make_qat_dir(tmp_path_factory.mktemp("qat"))


def test_points_ranges_and_round_trips(qat_dir):
    from tf_melgan.checkpoint import load_generator
    float_g, config = load_generator(qat_dir)
    fake, _ = qat.load_quantized(qat_dir)
    names = list(fake.quantizers())
    # input, conv_pre; per stage: 4 Snake points, the upsampler's conv, per residual
    # block 2 Snakes + 3 convs + the add; act_post, conv_post, tanh.
    stages, blocks = len(config.generator.ratios), config.generator.n_residual_layers
    assert len(names) == 2 + stages * (4 + 1 + blocks * (8 + 3 + 1)) + 4 + 1 + 1
    assert names[:3] == ["input", "conv_pre/output", "act_0/mul"]
    assert "res_0_0/add" in names and names[-1] == "tanh"
    saved = json.load(open(os.path.join(qat_dir, qat.RANGES_FILE)))["ranges"]
    assert len(saved) == len(names)
    assert all(lo <= 0 <= hi for lo, hi in saved.values())
    assert tuple(saved["tanh"]) == TANH_RANGE
    mel = np.random.default_rng(0).normal(-4, 1, size=(1, 40, 80)).astype(np.float32)
    y_float = float_g(tf.constant(mel)).numpy()
    y_fake = fake(tf.constant(mel)).numpy()
    assert 0 < np.mean((y_fake - y_float) ** 2)  # it does quantize
    # folded() keeps the ranges: the same fake-quant output
    unquantized = qat.load_quantized(qat_dir, fold=False)[0].folded()
    np.testing.assert_allclose(unquantized(tf.constant(mel)).numpy(), y_fake, atol=1e-6)
    for q in fake.quantizers().values():
        assert q.lo is not None


def test_converter_honours_the_qat_ranges(qat_dir, tmp_path, capsys):
    """The converter quantizes with the QAT ranges (every one's int8 scale is in the
    .tflite), checks the .tflite against the fake-quant Keras generator (its SNR floor) and
    says so in the manifest."""
    from tests.conftest import data_dir
    from tf_melgan.audio import load_audio, log_mel_numpy
    from tf_melgan.checkpoint import load_generator
    from tf_melgan.data import find_audio_files, split_files
    from tf_melgan.deploy.convert import convert
    from tf_melgan.deploy.litert import snr_db
    from tf_melgan.deploy.vocoder import load_vocoder
    out = str(tmp_path / "qat.tflite")
    # min_snr_db 0: random tiny weights put the simulation anywhere from 4 to 40 dB from
    # LiteRT (trained models: 15-21 dB, docs/BENCHMARKS.md); the scales below are the test.
    sidecar = convert(qat_dir, out, "int8", num_calibration=4, calibration_frames=64,
                      num_validation=1, min_snr_db=0.0)
    assert "WARNING: no quantization-aware form" not in capsys.readouterr().out
    assert sidecar["activation_ranges"] == "qat"
    assert sidecar["validation"]["reference"].startswith("Keras fake-quant")
    assert np.isfinite(sidecar["validation"]["snr_db"])
    fake, config = qat.load_quantized(qat_dir)
    float_g, _ = load_generator(qat_dir)
    _, held_out = split_files(find_audio_files(data_dir()), 2)
    audio = load_audio(held_out[0], config.audio.sample_rate)[:128 * 256]
    mel = log_mel_numpy(audio, config.audio)[None].astype(np.float32)
    litert = load_vocoder(out, num_threads=2)(mel)
    sim = snr_db(fake(tf.constant(mel)).numpy(), litert)
    plain = snr_db(float_g(tf.constant(mel)).numpy(), litert)
    assert np.isfinite(sim) and np.isfinite(plain)
    # Every simulated activation's int8 scale, (hi - lo) / 255, is a scale of the .tflite.
    from tensorflow.lite.tools import flatbuffer_utils
    tensors = flatbuffer_utils.read_model(out).subgraphs[0].tensors
    scales = np.array([t.quantization.scale[0] for t in tensors if t.quantization is not None
                       and t.quantization.scale is not None and len(t.quantization.scale) == 1])
    for name, (lo, hi) in qat.ranges_of(fake).items():
        assert np.min(np.abs(scales / ((hi - lo) / 255.0) - 1)) < 1e-4, name


def test_training_qat_calibrates_freezes_and_trains(tmp_path):
    """training.qat: the ranges are calibrated once, written beside the weights, and reused
    on resume; G trains through the simulation (finite losses, weights moved)."""
    from tests.conftest import TINY, data_dir
    from tf_melgan.checkpoint import load_generator
    from tf_melgan.config import config_from_dict
    from tf_melgan.trainer import run
    steps = ["training.steps=2", "training.steps_per_epoch=2", "training.checkpoint_every=2",
             "training.sample_every=100", "data.validation_clips=2", "loss.lambda_mel=45"]
    config = config_from_dict({}, TINY + SNAKE_NEAREST + steps + ["training.qat=true",
                                                                  f"data.path={data_dir()}"])
    model_dir = str(tmp_path / "model")
    summary = run(config, model_dir, verbose=0)
    assert summary["step"] == 2 and np.isfinite(summary["history"]["g_loss"]).all()
    ranges = qat.load_ranges(model_dir)
    generator, _ = qat.load_quantized(model_dir, fold=False)
    assert set(ranges) == set(generator.quantizers())
    assert all(np.isfinite(r).all() and r[0] < r[1] for r in ranges.values())
    mtime = os.path.getmtime(os.path.join(model_dir, qat.RANGES_FILE))
    config.training.steps = 4
    run(config, model_dir, verbose=0)  # resumes with the same, frozen ranges
    assert os.path.getmtime(os.path.join(model_dir, qat.RANGES_FILE)) == mtime
    assert qat.load_ranges(model_dir) == ranges
    trained, _ = load_generator(model_dir, which="latest")
    assert trained.count_params() == generator.folded().count_params()


def test_a_shipped_qat_model_converts_with_its_ranges(qat_dir, tmp_path, monkeypatch):
    """scripts/ship_model.py ships qat_ranges.json: the converter loads the QAT generator
    of a shipped name (resolved once, as the CLI does), calibrating only 4 x 64 frames (the
    trained ranges replace the calibrated ones); an explicit --ranges overrides them."""
    import shutil

    from tf_melgan import pretrained
    from tf_melgan.deploy.convert import convert, qat_ranges
    shipped = tmp_path / "pretrained"
    shutil.copytree(qat_dir, shipped / "tiny_qat")
    monkeypatch.setattr(pretrained, "HERE", str(shipped))
    monkeypatch.setattr(pretrained, "NAMES", ("tiny_qat",))
    generator = qat_ranges.load(pretrained.resolve("tiny_qat"))
    assert generator is not None and qat.ranges_of(generator) == qat.load_ranges(qat_dir)
    sidecar = convert(pretrained.resolve("tiny_qat"), str(tmp_path / "q.tflite"), "int8",
                      num_validation=1, min_snr_db=0.0)
    assert sidecar["activation_ranges"] == "qat"
    assert (sidecar["calibration"]["segments"], sidecar["calibration"]["frames"]) == (4, 256)
    sidecar = convert(qat_dir, str(tmp_path / "p.tflite"), "int8", ranges="p99.99",
                      num_calibration=2, calibration_frames=64, num_validation=1)
    assert sidecar["activation_ranges"] == "p99.99"
    assert "reference" not in sidecar["validation"]


def test_qat_float_output_keeps_the_output_layer_float32(tmp_path):
    """training.qat_float_output: conv_post and tanh are not simulated in int8, and the
    converter keeps them float32 (--float_layers output), so the waveform is off the int8
    tanh's 1/128 grid; the other ranges are still the QAT ones."""
    from tf_melgan.deploy.convert import convert
    from tf_melgan.deploy.vocoder import load_vocoder
    model_dir = make_qat_dir(tmp_path, ["training.qat=true", "training.qat_float_output=true"])
    fake, config = qat.load_quantized(model_dir)
    names = list(fake.quantizers())
    assert "tanh" not in names and "conv_post/output" not in names
    assert names[-1].startswith("act_post/")
    out = str(tmp_path / "f.tflite")
    sidecar = convert(model_dir, out, "int8", num_calibration=2, calibration_frames=64,
                      num_validation=1, min_snr_db=0.0)
    assert sidecar["float_layers"] == ["output"] and sidecar["activation_ranges"] == "qat"
    mel = np.random.default_rng(1).normal(-4, 1, size=(1, 64, 80)).astype(np.float32)
    wave = load_vocoder(out, num_threads=2)(mel)
    off_grid = np.abs(wave * 128 - np.round(wave * 128))
    assert np.mean(off_grid > 0.01) > 0.5
    with pytest.raises(Exception, match="float32"):
        convert(model_dir, str(tmp_path / "g.tflite"), "int8", int8_io=True,
                num_calibration=2, calibration_frames=64, num_validation=1)


def test_qat_float_stages_keep_the_last_stages_float32(tmp_path):
    """training.qat_float_stages 1: the last stage's upsampler and residual blocks, act_post
    and the output layer are not simulated in int8 (act_3, on stage 2's output, still is),
    the converter keeps the same layers in float32, and LiteRT's output matches the
    fake-quant one (36-45 dB SNR here; with the output layer alone in float32, 29 dB)."""
    from tf_melgan.config import ConfigError, config_from_dict
    from tf_melgan.deploy.convert import convert
    from tf_melgan.deploy.litert import LiteRTModel, read_ops, snr_db
    with pytest.raises(ConfigError, match="qat_float_output"):
        config_from_dict({}, ["training.qat=true", "training.qat_float_stages=1"])
    with pytest.raises(ConfigError, match=r"0\.\.4"):
        config_from_dict({}, ["training.qat=true", "training.qat_float_output=true",
                              "training.qat_float_stages=5"])
    model_dir = make_qat_dir(tmp_path, ["training.qat=true", "training.qat_float_output=true",
                                        "training.qat_float_stages=1"])
    fake, config = qat.load_quantized(model_dir)
    names = list(fake.quantizers())
    assert not [n for n in names if n.startswith(("up_3/", "res_3_", "act_post/"))]
    assert "res_2_2/add" in names and names[-1].startswith("act_3/")
    assert fake.float_layers() == ("up_3", "res_3_", "act_post", "pad_post", "output")
    out = str(tmp_path / "s.tflite")
    sidecar = convert(model_dir, out, "int8", num_calibration=2, calibration_frames=64,
                      num_validation=1, min_snr_db=0.0)
    assert sidecar["float_layers"] == ["up_3", "res_3_", "act_post", "pad_post", "output"]
    assert sidecar["activation_ranges"] == "qat"
    # float32: up_3's conv, 3 blocks x 3 convs, conv_post; int8: the other 31
    assert sidecar["kernels"] == {"CONV_2D float32 x float32": 11, "CONV_2D int8 x int8": 31}
    # ... and once in float32, it stays so to the waveform (no int8 pad before conv_post)
    ops = read_ops(out)
    last_int8 = max(i for i, op in enumerate(ops) if "INT8" in op["outputs"])
    assert sum(op["op"] == "CONV_2D" for op in ops[last_int8:]) == 11
    mel = np.random.default_rng(2).normal(-4, 1, size=(1, 64, 80)).astype(np.float32)
    snr = snr_db(fake(tf.constant(mel)).numpy()[0], LiteRTModel(out, num_threads=2)(mel)[0])
    assert snr > 33.0  # the tiny models here, output layer alone float32: 29 dB
