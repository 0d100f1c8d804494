"""Log-mel: NumPy and TF implementations against a direct librosa computation."""

import librosa
import numpy as np
import pytest
import tensorflow as tf

from tf_melgan.audio import LogMel, load_audio, log_mel_numpy
from tf_melgan.config import AudioConfig


def librosa_reference(audio, c: AudioConfig):
    """The official Audio2Mel recipe spelled out with librosa's own STFT and filters."""
    pad = (c.n_fft - c.hop_length) // 2
    padded = np.pad(audio.astype(np.float64), (pad, pad), mode="reflect")
    spec = np.abs(librosa.stft(padded, n_fft=c.n_fft, hop_length=c.hop_length,
                               win_length=c.win_length, window="hann", center=False))
    fb = librosa.filters.mel(sr=c.sample_rate, n_fft=c.n_fft, n_mels=c.n_mels,
                             fmin=c.fmin, fmax=c.fmax)
    return np.log10(np.maximum(fb @ spec, c.log_clamp)).T


@pytest.fixture(scope="module")
def clip(clip_path):
    audio = load_audio(clip_path, 22050)
    return audio[: len(audio) // 256 * 256]


def test_numpy_matches_librosa_on_real_clip(clip):
    c = AudioConfig()
    ours = log_mel_numpy(clip, c)
    ref = librosa_reference(clip, c)
    assert ours.shape == (len(clip) // 256, 80) == ref.shape
    np.testing.assert_allclose(ours, ref, atol=1e-4)


def test_tf_matches_numpy_and_runs_in_graph_and_tf_data(clip):
    c = AudioConfig()
    ref = log_mel_numpy(clip, c)
    layer = LogMel(c)
    eager = layer(clip[None]).numpy()[0]
    np.testing.assert_allclose(eager, ref, atol=1e-4)
    graph = tf.function(lambda a: layer(a))(tf.constant(clip[None])).numpy()[0]
    np.testing.assert_allclose(graph, ref, atol=1e-4)
    ds = tf.data.Dataset.from_tensors(clip).map(lambda a: layer(a[None])[0])
    np.testing.assert_allclose(next(iter(ds)).numpy(), ref, atol=1e-4)


@pytest.mark.parametrize("overrides", [dict(win_length=800, n_fft=1024),
                                       dict(n_fft=512, hop_length=128, win_length=512,
                                            fmin=80.0, fmax=7600.0, n_mels=64)])
def test_other_settings_match_librosa(clip, overrides):
    c = AudioConfig(**overrides)
    audio = clip[: 20 * c.hop_length * 10]
    ref = librosa_reference(audio, c)
    np.testing.assert_allclose(log_mel_numpy(audio, c), ref, atol=1e-4)
    np.testing.assert_allclose(LogMel(c)(audio[None]).numpy()[0], ref, atol=1e-4)


@pytest.mark.parametrize("samples", [1024, 8192, 8192 + 100])
def test_frames_are_samples_over_hop(samples):
    audio = np.random.default_rng(0).uniform(-0.5, 0.5, samples).astype("float32")
    assert log_mel_numpy(audio, AudioConfig()).shape == (samples // 256, 80)
    assert LogMel()(audio[None]).shape == (1, samples // 256, 80)


def test_log_clamp_floor_on_silence():
    mel = log_mel_numpy(np.zeros(4096, "float32"), AudioConfig())
    np.testing.assert_array_equal(mel, np.full_like(mel, -5.0))


def test_logmel_layer_serializes():
    layer = LogMel(AudioConfig(n_mels=64))
    clone = LogMel.from_config(layer.get_config())
    assert clone.audio_config == layer.audio_config
