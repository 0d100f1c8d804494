"""The spectral ops of the Fourier head: the mel's pseudo-inverse prior and an inverse STFT.

Both use the mel's own STFT (tf_melgan.audio: its window, n_fft, hop and padding), so one
STFT frame goes with one mel frame. The inverse STFT is a matmul with a fixed inverse-DFT
basis, `tf.signal.overlap_and_add` and a division by the overlap-added squared window: it
converts to builtin LiteRT ops (FULLY_CONNECTED, shape ops), where `tf.signal.inverse_stft`
would need Flex (its IRFFT).
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from tf_melgan.audio import mel_filters, stft_padding, stft_window
from tf_melgan.config import AudioConfig

# FreeV's floor on the prior's magnitude (Lv et al. 2024): max(|M+ mel|, 1e-5).
PRIOR_FLOOR = 1e-5


def as_audio_config(value) -> AudioConfig:
    return AudioConfig(**value) if isinstance(value, dict) else value


def mel_pseudo_inverse(config: AudioConfig) -> np.ndarray:
    """M+ [n_mels, n_fft // 2 + 1]: the Moore-Penrose pseudo-inverse of the mel filterbank,
    so that linear magnitudes [frames, bins] ~ mel [frames, n_mels] @ M+."""
    return np.linalg.pinv(mel_filters(config).astype(np.float64))


def stft(audio, config: AudioConfig):
    """The mel's complex STFT of [batch, samples] (its padding, window and hop), float32,
    [batch, frames, bins], frames = samples // hop as tf_melgan.audio's log-mel."""
    audio = tf.cast(audio, tf.float32)
    pad = stft_padding(config)
    frames = tf.signal.frame(tf.pad(audio, [[0, 0], [pad, pad]], mode="REFLECT"),
                             config.n_fft, config.hop_length)
    samples = audio.shape[-1] if audio.shape[-1] is not None else tf.shape(audio)[-1]
    frames = frames[:, : samples // config.hop_length]
    return tf.signal.rfft(frames * stft_window(config).astype(np.float32))


def inverse_dft_basis(config: AudioConfig) -> np.ndarray:
    """[2 * bins, n_fft] float64: concat([re, im]) @ basis = irfft(re + i im) * window, the
    synthesis window folded in. irfft ignores the imaginary parts of DC and Nyquist; so
    does the basis (their sine rows are zero)."""
    n_fft, bins = config.n_fft, config.n_fft // 2 + 1
    k, n = np.arange(bins)[:, None], np.arange(n_fft)[None, :]
    weight = np.where((k == 0) | (k == n_fft // 2), 1.0, 2.0) / n_fft
    angle = 2 * np.pi * k * n / n_fft
    window = stft_window(config)
    return np.concatenate([weight * np.cos(angle), -weight * np.sin(angle)]) * window


@keras.saving.register_keras_serializable(package="tf_melgan")
class MelPrior(keras.layers.Layer):
    """log-mel [batch, frames, n_mels] (as tf_melgan.audio makes it, normalised or not) ->
    ln(max(|mel @ M+|, 1e-5)) [batch, frames, bins], FreeV's magnitude prior in log form."""

    def __init__(self, audio_config=None, stats=None, **kwargs):
        kwargs.setdefault("trainable", False)
        super().__init__(**kwargs)
        self.audio_config = as_audio_config(audio_config or AudioConfig())
        self.stats = None if stats is None else np.asarray(stats, np.float64)
        self._pinv = mel_pseudo_inverse(self.audio_config).astype(np.float32)

    def call(self, log_mel):
        x = tf.cast(log_mel, tf.float32)
        if self.stats is not None:
            x = x * self.stats[1].astype(np.float32) + self.stats[0].astype(np.float32)
        base = 10.0 if self.audio_config.preset.log == "log10" else np.e
        mel = tf.exp(x * np.float32(np.log(base)))
        linear = tf.matmul(mel, self._pinv)
        return tf.math.log(tf.maximum(tf.abs(linear), PRIOR_FLOOR))

    def get_config(self):
        stats = None if self.stats is None else self.stats.tolist()
        return {**super().get_config(), "audio_config": vars(self.audio_config).copy(),
                "stats": stats}


@keras.saving.register_keras_serializable(package="tf_melgan")
class InverseSTFT(keras.layers.Layer):
    """(real, imag) [batch, frames, bins] -> waveform [batch, frames * hop], the inverse of
    the mel's STFT: frame k is the one tf_melgan.audio centres on the same samples, so an
    STFT of a waveform made as the mel's is returns that waveform (tests/test_spectral.py).

    Weighted overlap-add with the analysis window: sum_k w(n - k hop) x_k(n) divided by
    sum_k w^2(n - k hop) over the frames present, so the ends of an utterance (fewer
    frames) are normalised by what they have. Needs hop <= win_length / 2 (the sum stays
    away from zero; config.validate checks it)."""

    def __init__(self, audio_config=None, **kwargs):
        kwargs.setdefault("trainable", False)
        super().__init__(**kwargs)
        self.audio_config = as_audio_config(audio_config or AudioConfig())
        c = self.audio_config
        self.hop, self.n_fft, self.pad = c.hop_length, c.n_fft, stft_padding(c)
        self._basis = inverse_dft_basis(c).astype(np.float32)
        self._window_sq = (stft_window(c) ** 2).astype(np.float32)

    def call(self, real, imag):
        spectrum = tf.concat([tf.cast(real, tf.float32), tf.cast(imag, tf.float32)], axis=-1)
        frames = tf.matmul(spectrum, self._basis)  # [batch, F, n_fft]
        audio = tf.signal.overlap_and_add(frames, self.hop)
        ones = tf.ones_like(frames[:1, :, :1])  # [1, F, 1]: the frames present
        envelope = tf.signal.overlap_and_add(ones * self._window_sq, self.hop)
        audio = audio / tf.maximum(envelope, 1e-8)
        # Padded sample `pad` is sample 0; keep F * hop samples, sliced so that the graph
        # needs no shape arithmetic beyond the frame count.
        length = tf.shape(frames)[1] * self.hop
        return audio[:, self.pad:][:, :length]

    def get_config(self):
        return {**super().get_config(), "audio_config": vars(self.audio_config).copy()}
