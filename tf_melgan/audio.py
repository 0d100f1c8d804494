"""Audio I/O and the official MelGAN log-mel features, in NumPy and in TensorFlow.

Recipe (official `Audio2Mel`): reflect-pad (n_fft - hop) / 2 samples on each side, STFT
with center=False and a periodic Hann window, magnitude, librosa's Slaney mel filters,
log10(max(mel, 1e-5)). For a length that is a multiple of hop, frames == samples // hop.
"""

from __future__ import annotations

import os

import keras
import librosa
import numpy as np
import soundfile as sf
import tensorflow as tf

from tf_melgan.config import AudioConfig


class AudioError(ValueError):
    """An audio file cannot be used; the message names the file and the reason."""


def load_audio(path: str, sample_rate: int, peak: float = 0.95) -> np.ndarray:
    """Reads any format libsndfile knows, mixes to mono, resamples, peak-normalises.

    Returns float32 samples in [-peak, peak]. Raises AudioError for missing, unreadable,
    empty, silent or non-finite audio.
    """
    if not os.path.isfile(path):
        raise AudioError(f"{path}: no such file")
    if os.path.getsize(path) == 0:
        raise AudioError(f"{path}: empty file (0 bytes)")
    try:
        audio, rate = sf.read(path, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as e:
        raise AudioError(f"{path}: not a readable audio file ({e})") from None
    if audio.shape[0] == 0:
        raise AudioError(f"{path}: contains no samples")
    audio = audio.mean(axis=1)
    if not np.all(np.isfinite(audio)):
        raise AudioError(f"{path}: contains NaN or infinite samples")
    if rate != sample_rate:
        audio = librosa.resample(audio, orig_sr=rate, target_sr=sample_rate).astype(np.float32)
    top = float(np.max(np.abs(audio)))
    if top == 0.0:
        raise AudioError(f"{path}: contains only silence")
    return (audio * (peak / top)).astype(np.float32)


def mel_filters(config: AudioConfig) -> np.ndarray:
    """librosa's default (Slaney) mel filterbank, shape [n_fft // 2 + 1, n_mels]."""
    fb = librosa.filters.mel(sr=config.sample_rate, n_fft=config.n_fft, n_mels=config.n_mels,
                             fmin=config.fmin, fmax=config.fmax)
    return fb.T.astype(np.float32)


def _window(config: AudioConfig) -> np.ndarray:
    # Periodic Hann of win_length, centred in n_fft like torch.stft / librosa.
    win = np.hanning(config.win_length + 1)[:-1]
    left = (config.n_fft - config.win_length) // 2
    return np.pad(win, (left, config.n_fft - config.win_length - left)).astype(np.float32)


def log_mel_numpy(audio: np.ndarray, config: AudioConfig) -> np.ndarray:
    """Log-mel of `audio` ([samples] or [batch, samples]) -> [..., frames, n_mels], NumPy."""
    audio = np.asarray(audio, dtype=np.float64)
    pad = (config.n_fft - config.hop_length) // 2
    widths = [(0, 0)] * (audio.ndim - 1) + [(pad, pad)]
    padded = np.pad(audio, widths, mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(padded, config.n_fft, axis=-1)
    frames = frames[..., :: config.hop_length, :] * _window(config).astype(np.float64)
    magnitude = np.abs(np.fft.rfft(frames, axis=-1))
    mel = magnitude @ mel_filters(config).astype(np.float64)
    return np.log10(np.maximum(mel, config.log_clamp)).astype(np.float32)


@keras.saving.register_keras_serializable(package="tf_melgan")
class LogMel(keras.layers.Layer):
    """The same log-mel as `log_mel_numpy`, in TensorFlow: [batch, samples] -> [batch, frames, n_mels].

    Usable in a tf.function, a tf.data map and inside a Keras model. The STFT runs in
    float64: in float32, quiet bins of loud frames are off by up to 1.3e-4 in log10 units
    (FFT rounding is relative to the whole frame); the mel is a small part of a step's cost.
    """

    def __init__(self, audio_config: dict | AudioConfig | None = None, **kwargs):
        kwargs.setdefault("trainable", False)
        super().__init__(**kwargs)
        if isinstance(audio_config, dict):
            audio_config = AudioConfig(**audio_config)
        self.audio_config = audio_config or AudioConfig()
        self._filters = mel_filters(self.audio_config).astype(np.float64)
        self._window_np = _window(self.audio_config).astype(np.float64)

    def call(self, audio):
        c = self.audio_config
        audio = tf.cast(audio, tf.float64)
        pad = (c.n_fft - c.hop_length) // 2
        rank = len(audio.shape)
        padded = tf.pad(audio, [[0, 0]] * (rank - 1) + [[pad, pad]], mode="REFLECT")
        frames = tf.signal.frame(padded, c.n_fft, c.hop_length) * self._window_np
        magnitude = tf.abs(tf.signal.rfft(frames))
        mel = tf.tensordot(magnitude, self._filters, axes=1)
        log_mel = tf.math.log(tf.maximum(mel, c.log_clamp)) / np.log(10.0)
        return tf.cast(log_mel, tf.float32)

    def compute_output_shape(self, input_shape):
        frames = None if input_shape[-1] is None else input_shape[-1] // self.audio_config.hop_length
        return tuple(input_shape[:-1]) + (frames, self.audio_config.n_mels)

    def get_config(self):
        return {**super().get_config(), "audio_config": vars(self.audio_config).copy()}
