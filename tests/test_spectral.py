"""tf_melgan.spectral: the inverse STFT inverts the mel's STFT; the prior is FreeV's formula."""

import numpy as np
import pytest

from tf_melgan.audio import log_mel_numpy, stft_padding, stft_window
from tf_melgan.config import AudioConfig
from tf_melgan.spectral import InverseSTFT, MelPrior, mel_pseudo_inverse, stft


def _numpy_stft(x, config):
    pad = stft_padding(config)
    padded = np.pad(x, (pad, pad), mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(padded, config.n_fft)
    frames = frames[::config.hop_length][:len(x) // config.hop_length]
    return np.fft.rfft(frames * stft_window(config), axis=-1)


@pytest.mark.parametrize("preset,n_fft,hop,win", [("melgan", 1024, 256, 1024),
                                                  ("tacotron2", 1024, 256, 1024),
                                                  ("hifigan", 1024, 256, 800)])
def test_inverse_stft_of_the_mels_stft_returns_the_signal(preset, n_fft, hop, win):
    config = AudioConfig(mel_preset=preset, n_fft=n_fft, hop_length=hop, win_length=win)
    x = np.random.default_rng(0).standard_normal(hop * 37) * 0.1
    spectrum = _numpy_stft(x, config)
    y = InverseSTFT(config)(spectrum.real[None].astype(np.float32),
                            spectrum.imag[None].astype(np.float32)).numpy()[0]
    assert y.shape == x.shape
    assert np.max(np.abs(y - x)) < 2e-6  # ends included: they are normalised by what they have


def test_stft_matches_numpy():
    config = AudioConfig()
    x = np.random.default_rng(1).standard_normal(256 * 20).astype(np.float32) * 0.1
    ours = stft(x[None], config).numpy()[0]
    ref = _numpy_stft(x.astype(np.float64), config)
    assert ours.shape == ref.shape
    assert np.max(np.abs(ours - ref)) < 1e-4 * np.max(np.abs(ref))


@pytest.mark.parametrize("preset", ["melgan", "hifigan"])
def test_prior_is_the_log_of_the_pseudo_inverse_magnitude(preset):
    config = AudioConfig(mel_preset=preset)
    x = np.random.default_rng(2).standard_normal(256 * 30).astype(np.float32) * 0.1
    stats = np.stack([np.linspace(-3, -1, 80), np.linspace(0.5, 2, 80)])
    mel = log_mel_numpy(x, config, stats=stats)
    ours = MelPrior(config, stats)(mel[None]).numpy()[0]
    log_mel = mel.astype(np.float64) * stats[1] + stats[0]
    linear = (10.0 ** log_mel if preset == "melgan" else np.exp(log_mel)) @ np.linalg.pinv(
        librosa_filters(config))
    ref = np.log(np.maximum(np.abs(linear), 1e-5))
    assert np.max(np.abs(ours - ref)) < 1e-4


def librosa_filters(config):
    import librosa
    return librosa.filters.mel(sr=config.sample_rate, n_fft=config.n_fft, n_mels=config.n_mels,
                               fmin=config.fmin, fmax=config.fmax).T.astype(np.float32)


def test_pseudo_inverse_is_the_filterbanks():
    config = AudioConfig()
    pinv = mel_pseudo_inverse(config)
    fb = librosa_filters(config).astype(np.float64)
    assert pinv.shape == (80, 513)
    np.testing.assert_allclose(fb @ pinv @ fb, fb, atol=1e-6)  # Moore-Penrose: A A+ A = A
