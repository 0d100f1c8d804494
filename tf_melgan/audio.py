"""Audio I/O and log-mel features, in NumPy and in TensorFlow.

`audio.mel_preset` picks the recipe (config.MEL_PRESETS, docs/CONFIG.md "Mel presets"); all share a
periodic Hann window of win_length centred in n_fft (rounded to float32 for the two PyTorch
projects, as torch.hann_window; float64 for tacotron2, as librosa), a float64 STFT and
librosa's Slaney mel filters.

- melgan (official `Audio2Mel`, the default): reflect-pad (n_fft - hop) / 2 samples on each
  side, STFT with center=False, magnitude, log10(max(mel, 1e-5)).
- hifigan (`meldataset.mel_spectrogram`): the same padding, magnitude
  sqrt(re^2 + im^2 + 1e-9), ln(max(mel, 1e-5)), fmax 8000.
- tacotron2 (ESPnet / ParallelWaveGAN / TensorFlowTTS `logmelfilterbank`): reflect-pad
  n_fft // 2 on each side (librosa.stft center=True, pad_mode='reflect'), magnitude,
  log10(max(mel, 1e-10)), fmin 80, fmax 7600.

For a length that is a multiple of hop the padding 'hop' gives samples // hop frames, the
padding 'center' one more. The generator turns F frames into F * hop samples, so by default
(`full=False`) the extra last frame is dropped: frame k (centred on sample k * hop) then
goes with samples [k * hop, (k + 1) * hop), the pairing ParallelWaveGAN trains with.
With `audio.stats_path` set, the result is normalised per band: (log_mel - mean) / std.
"""

from __future__ import annotations

import os

import keras
import librosa
import numpy as np
import soundfile as sf
import tensorflow as tf

from tf_melgan.config import AudioConfig, read_mel_stats
from tf_melgan.errors import TfMelganError


class AudioError(TfMelganError, ValueError):
    """An audio file cannot be used; the message names the file and the reason."""


# Peaks below this (-100 dBFS, under the quietest step of 16-bit audio) count as silence:
# normalising them to audio.peak would amplify noise (or overflow float32, peaks < ~3e-39).
SILENCE_PEAK = 1e-5


def load_audio(path: str, sample_rate: int, peak: float = 0.95) -> np.ndarray:
    """Reads any format libsndfile knows, mixes to mono, resamples, peak-normalises.

    Returns float32 samples in [-peak, peak]. Raises AudioError for missing, unreadable,
    empty, silent (peak below SILENCE_PEAK) or non-finite audio.
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
    if top < SILENCE_PEAK:
        raise AudioError(f"{path}: effectively silent (peak {top:.3g} < {SILENCE_PEAK:g}, "
                         f"-100 dBFS)")
    return (audio.astype(np.float64) * (peak / top)).astype(np.float32)


def mel_filters(config: AudioConfig) -> np.ndarray:
    """librosa's default (Slaney) mel filterbank, shape [n_fft // 2 + 1, n_mels]."""
    fb = librosa.filters.mel(sr=config.sample_rate, n_fft=config.n_fft, n_mels=config.n_mels,
                             fmin=config.fmin, fmax=config.fmax)
    return fb.T.astype(np.float32)


def stft_window(config: AudioConfig) -> np.ndarray:
    # Periodic Hann of win_length, centred in n_fft like torch.stft / librosa; float64,
    # rounded to float32 for the presets from PyTorch projects (torch.hann_window).
    win = np.hanning(config.win_length + 1)[:-1]
    left = (config.n_fft - config.win_length) // 2
    win = np.pad(win, (left, config.n_fft - config.win_length - left))
    return win.astype(np.float32).astype(np.float64) if config.preset.float32_window else win


def stft_padding(config: AudioConfig) -> int:
    if config.preset.padding == "center":
        return config.n_fft // 2
    return (config.n_fft - config.hop_length) // 2


def num_frames(samples: int, config: AudioConfig, full: bool = False) -> int:
    """Frames of the log-mel of `samples` samples (see `log_mel_numpy`)."""
    pad = stft_padding(config)
    frames = (samples + 2 * pad - config.n_fft) // config.hop_length + 1
    return frames if full else min(frames, samples // config.hop_length)


def mel_stats(config: AudioConfig) -> np.ndarray | None:
    """(mean, std) [2, n_mels] float64 from `config.stats_path`, or None when it is unset."""
    if not config.stats_path:
        return None
    return read_mel_stats(config.stats_path, config.n_mels)


def log_mel_numpy(audio: np.ndarray, config: AudioConfig, full: bool = False,
                  normalize: bool = True, stats: "np.ndarray | None" = None) -> np.ndarray:
    """Log-mel of `audio` ([samples] or [batch, samples]) -> [..., frames, n_mels], NumPy.

    frames = samples // hop; `full=True` keeps the extra last frame of the 'center'
    padding (tacotron2: samples // hop + 1). `normalize=False` skips audio.stats_path;
    `stats` ([2, n_mels] mean, std, e.g. an export's embedded ones) replaces it.
    """
    preset = config.preset
    audio = np.asarray(audio, dtype=np.float64)
    samples = audio.shape[-1]
    pad = stft_padding(config)
    widths = [(0, 0)] * (audio.ndim - 1) + [(pad, pad)]
    padded = np.pad(audio, widths, mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(padded, config.n_fft, axis=-1)
    frames = frames[..., :: config.hop_length, :] * stft_window(config)
    frames = frames[..., : num_frames(samples, config, full), :]
    spectrum = np.fft.rfft(frames, axis=-1)
    if preset.magnitude_eps:
        magnitude = np.sqrt(spectrum.real ** 2 + spectrum.imag ** 2 + preset.magnitude_eps)
    else:
        magnitude = np.abs(spectrum)
    mel = magnitude @ mel_filters(config).astype(np.float64)
    mel = np.maximum(mel, config.log_clamp)
    log_mel = np.log(mel) if preset.log == "ln" else np.log10(mel)
    if stats is None and normalize:
        stats = mel_stats(config)
    if stats is not None:
        log_mel = (log_mel - stats[0]) / stats[1]
    return log_mel.astype(np.float32)


def silence_mel(config: AudioConfig, stats: "np.ndarray | None" = None) -> np.ndarray:
    """The mel of digital silence, [n_mels]: the lowest value each band can take (log of
    the clamp, normalised when audio.stats_path or `stats` is set)."""
    return log_mel_numpy(np.zeros(2 * config.n_fft, np.float32), config, stats=stats)[0]


@keras.saving.register_keras_serializable(package="tf_melgan")
class LogMel(keras.layers.Layer):
    """The same log-mel as `log_mel_numpy`, in TensorFlow: [batch, samples] -> [batch, frames, n_mels].

    Usable in a tf.function, a tf.data map and inside a Keras model. The STFT runs in
    float64: in float32, quiet bins of loud frames are off by up to 1.3e-4 in log10 units
    (FFT rounding is relative to the whole frame); the mel is a small part of a step's cost.
    frames = samples // hop unless `full=True` (see `log_mel_numpy`). The normalisation
    statistics of audio.stats_path are read once, here, and kept in the layer's config.
    """

    def __init__(self, audio_config: dict | AudioConfig | None = None, full: bool = False,
                 stats=None, **kwargs):
        kwargs.setdefault("trainable", False)
        super().__init__(**kwargs)
        if isinstance(audio_config, dict):
            audio_config = AudioConfig(**audio_config)
        self.audio_config = audio_config or AudioConfig()
        self.full = bool(full)
        self._filters = mel_filters(self.audio_config).astype(np.float64)
        self._window_np = stft_window(self.audio_config)
        if stats is None:
            stats = mel_stats(self.audio_config)
        self._stats = None if stats is None else np.asarray(stats, np.float64)
        if self._stats is not None and self._stats.shape != (2, self.audio_config.n_mels):
            raise ValueError(f"stats must have shape (2, {self.audio_config.n_mels}), "
                             f"got {self._stats.shape}")

    def call(self, audio):
        c, preset = self.audio_config, self.audio_config.preset
        audio = tf.cast(audio, tf.float64)
        pad = stft_padding(c)
        rank = len(audio.shape)
        padded = tf.pad(audio, [[0, 0]] * (rank - 1) + [[pad, pad]], mode="REFLECT")
        frames = tf.signal.frame(padded, c.n_fft, c.hop_length)
        if not self.full and preset.padding == "center":
            samples = audio.shape[-1]  # static when known, so the frame count stays static
            samples = tf.shape(audio)[-1] if samples is None else samples
            frames = frames[..., : samples // c.hop_length, :]
        spectrum = tf.signal.rfft(frames * self._window_np)
        if preset.magnitude_eps:
            magnitude = tf.sqrt(tf.math.real(spectrum) ** 2 + tf.math.imag(spectrum) ** 2
                                + preset.magnitude_eps)
        else:
            magnitude = tf.abs(spectrum)
        mel = tf.tensordot(magnitude, self._filters, axes=1)
        log_mel = tf.math.log(tf.maximum(mel, c.log_clamp))
        if preset.log == "log10":
            log_mel = log_mel / np.log(10.0)
        if self._stats is not None:
            log_mel = (log_mel - self._stats[0]) / self._stats[1]
        return tf.cast(log_mel, tf.float32)

    def compute_output_shape(self, input_shape):
        samples = input_shape[-1]
        frames = None if samples is None else num_frames(samples, self.audio_config, self.full)
        return tuple(input_shape[:-1]) + (frames, self.audio_config.n_mels)

    def get_config(self):
        stats = None if self._stats is None else self._stats.tolist()
        return {**super().get_config(), "audio_config": vars(self.audio_config).copy(),
                "full": self.full, "stats": stats}
