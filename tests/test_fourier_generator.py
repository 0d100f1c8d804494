"""tf_melgan.fourier_generator (and its body and head): the built model's facts."""

import numpy as np
import pytest

from tf_melgan.builders import build_generator, rebuild
from tf_melgan.config import ConfigError, load_config, validate
from tf_melgan.streaming import empirical_receptive_field, stream_all


def _config(*overrides):
    return load_config(None, ["generator.head=fourier", "generator.dim=16",
                              "generator.n_blocks=2", "generator.intermediate=24",
                              *overrides])


@pytest.mark.parametrize("body", ["convnext", "resnet"])
def test_receptive_field_is_what_the_model_depends_on(body):
    g = build_generator(_config(f"generator.body={body}"))
    measured = empirical_receptive_field(g, 80, frames=64, method="gradient")
    assert (measured.left, measured.right) == (g.receptive_field.left, g.receptive_field.right)


def test_untrained_head_outputs_the_prior_magnitude():
    g = build_generator(_config())
    mel = np.random.default_rng(0).normal(-2, 1, (1, 12, 80)).astype(np.float32)
    log_mag, _, _, _ = g.spectrum(mel)
    np.testing.assert_allclose(log_mag.numpy(), g.head.prior(mel).numpy(), atol=1e-6)


@pytest.mark.parametrize("body", ["convnext", "resnet"])
def test_chunked_synthesis_equals_whole(body):
    g = build_generator(_config(f"generator.body={body}")).folded()
    mel = np.random.default_rng(1).normal(-2, 1, (1, 70, 80)).astype(np.float32)
    whole = g(mel).numpy()[0]
    chunked = stream_all(lambda m: g(m).numpy(), mel[0], chunk_frames=16,
                         context_frames=(g.receptive_field.left, g.receptive_field.right))
    assert np.max(np.abs(chunked - whole)) < 1e-5


def test_folded_resnet_body_gives_the_same_output():
    g = build_generator(_config("generator.body=resnet", "generator.activation=snake"))
    mel = np.random.default_rng(2).normal(-2, 1, (1, 20, 80)).astype(np.float32)
    np.testing.assert_allclose(g.folded()(mel).numpy(), g(mel).numpy(), atol=1e-5)
    same = rebuild(g)
    same.set_weights(g.get_weights())
    np.testing.assert_allclose(same(mel).numpy(), g(mel).numpy(), atol=1e-6)


@pytest.mark.parametrize("override,message", [
    ("generator.body=unet", "generator.body"),
    ("generator.phase=complex", "generator.phase"),
    ("audio.hop_length=600", "hop_length <= win_length / 2"),
    ("training.qat=true", "training.qat"),
])
def test_bad_fourier_configs_are_refused(override, message):
    with pytest.raises(ConfigError, match=message):
        validate(_config(override, "generator.upsampling=nearest"))


def test_phase_loss_needs_the_fourier_head():
    with pytest.raises(ConfigError, match="lambda_phase"):
        validate(load_config(None, ["loss.lambda_phase=1"]))


# ------------------------------------------------------------------ exports

@pytest.fixture(scope="module")
def fourier_dir(tmp_path_factory, audio_dir):
    """A model dir of a resnet-body Fourier generator with dilations 1, 3, 9: its
    ReflectionPad(9) at the frame rate needs 10 frames, more than a MelGAN generator."""
    import keras
    path = tmp_path_factory.mktemp("fourier")
    config = _config("generator.body=resnet", "generator.n_blocks=3", f"data.path={audio_dir}",
                     "data.validation_clips=2")
    keras.utils.set_random_seed(4)
    g = build_generator(config)
    (path / "config.yaml").write_text(config.to_yaml())
    g.save_weights(str(path / "best_generator.weights.h5"))
    return str(path), g


def test_min_frames_is_what_the_model_takes(fourier_dir):
    _, g = fourier_dir
    assert g.min_frames == 10
    mel = np.random.default_rng(3).normal(-2, 1, (1, 10, 80)).astype(np.float32)
    assert g(mel).shape == (1, 10 * 256)
    with pytest.raises(Exception):
        g(mel[:, :9])


def test_saved_model_and_tflite_equal_keras_and_stream_exactly(fourier_dir, tmp_path):
    from tf_melgan import export
    from tf_melgan.deploy import convert as conv
    from tf_melgan.deploy.manifest import read_manifest
    from tf_melgan.synthesize import MelError, load_vocoder, synthesize

    model_dir, g = fourier_dir
    g = g.folded()
    saved = str(tmp_path / "saved")
    assert export.main(["export", "--model_dir", model_dir, "--output", saved]) == 0
    tflite = str(tmp_path / "vocoder.tflite")
    conv.convert(model_dir, tflite, "float32", num_validation=2, validation_frames=64)
    mel = np.random.default_rng(5).normal(-2, 1, (75, 80)).astype(np.float32)
    whole = g(mel[None]).numpy()[0]
    for path, tolerance in ((saved, g.export_tolerance), (tflite, 1e-4)):
        assert read_manifest(path).min_frames == 10
        vocoder = load_vocoder(path)
        assert vocoder.min_frames == 10
        assert np.max(np.abs(synthesize(vocoder, mel) - whole)) < tolerance
        chunked = synthesize(vocoder, mel, chunk_frames=16)  # the default context
        assert np.max(np.abs(chunked - whole)) < tolerance
        with pytest.raises(MelError, match="9 frames, the generator needs at least 10"):
            synthesize(vocoder, mel[:9])


def test_quantize_keeps_the_head_and_the_waveform_in_float(fourier_dir, tmp_path):
    """convert --quantize of a Fourier model: int8 body, float32 head (prior, magnitude,
    phase, inverse STFT) and output: its log-mel stays the float model's."""
    from tf_melgan.deploy import convert as conv
    model_dir, _ = fourier_dir
    sidecar = conv.convert(model_dir, str(tmp_path / "int8.tflite"), "int8", num_validation=2,
                           validation_frames=64, num_calibration=4, calibration_frames=32)
    assert sidecar["float_layers"] == ["head", "output"]
    assert sidecar["output"]["dtype"] == "float32"
    assert "QUANTIZE" in sidecar["ops"] and "FULLY_CONNECTED" in sidecar["ops"]
    v = sidecar["validation"]
    assert v["mel_l1_vs_keras"] < 0.05, v
