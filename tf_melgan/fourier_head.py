"""The Fourier head: frame features -> one STFT frame per mel frame -> waveform.

log|X| = prior + residual, the prior being the mel's pseudo-inverse magnitude in log form
(tf_melgan.spectral.MelPrior, FreeV: Lv et al. 2024) and the residual a Dense layer that
starts at zero, so an untrained head already outputs the prior's magnitude. The phase:
- 'angle' (Vocos, Siuzdak 2023): one output p per bin, X = |X| (cos p, sin p);
- 'unit' (APNet2, Du et al. 2023, whose atan2 of two outputs is the same angle): two
  outputs (a, b) per bin, X = |X| (a, b) / sqrt(a^2 + b^2).
The log-magnitude is clipped at ln(n_fft) (a full-scale sine's peak is n_fft / 4), so an
early step cannot overflow exp. The waveform is tf_melgan.spectral.InverseSTFT's.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from tf_melgan.spectral import InverseSTFT, MelPrior, as_audio_config

PHASES = ("angle", "unit")


@keras.saving.register_keras_serializable(package="tf_melgan")
class FourierHead(keras.layers.Layer):
    def __init__(self, audio_config, dim, phase="angle", stats=None, **kwargs):
        super().__init__(**kwargs)
        if phase not in PHASES:
            raise ValueError(f"phase must be one of {', '.join(PHASES)}, got {phase!r}")
        self.audio_config, self.dim, self.phase = as_audio_config(audio_config), dim, phase
        self.stats = None if stats is None else np.asarray(stats, np.float64)
        self.bins = self.audio_config.n_fft // 2 + 1
        self.max_log_magnitude = float(np.log(self.audio_config.n_fft))
        self.prior = MelPrior(self.audio_config, stats, name="prior")
        self.magnitude = keras.layers.Dense(self.bins, kernel_initializer="zeros",
                                            name="magnitude")
        self.angle = keras.layers.Dense(self.bins * (1 if phase == "angle" else 2), name="phase")
        self.istft = InverseSTFT(self.audio_config, name="istft")

    @property
    def reach(self) -> tuple:
        """(left, right) frames the iSTFT mixes into one output frame's samples."""
        c = self.audio_config
        pad, hop, n_fft = self.istft.pad, c.hop_length, c.n_fft
        return -((pad - n_fft) // hop + 1), (hop + pad - 1) // hop

    def build(self, input_shape=None):
        self.magnitude.build((None, None, self.dim))
        self.angle.build((None, None, self.dim))
        self.built = True

    def spectrum(self, features, log_mel):
        """(log |X|, real, imag, phase), each [batch, frames, bins] float32."""
        features = ops.cast(features, "float32")
        log_mag = ops.minimum(self.prior(log_mel) + self.magnitude(features),
                              self.max_log_magnitude)
        mag = ops.exp(log_mag)
        p = self.angle(features)
        if self.phase == "angle":
            cos, sin, phase = ops.cos(p), ops.sin(p), p
        else:
            a, b = p[..., :self.bins], p[..., self.bins:]
            norm = ops.sqrt(a * a + b * b + 1e-12)
            cos, sin, phase = a / norm, b / norm, ops.arctan2(b, a)
        return log_mag, mag * cos, mag * sin, phase

    def call(self, features, log_mel, return_phase=False):
        _, real, imag, phase = self.spectrum(features, log_mel)
        audio = self.istft(real, imag)
        return (audio, phase) if return_phase else audio

    def get_config(self):
        stats = None if self.stats is None else self.stats.tolist()
        return {**super().get_config(), "audio_config": vars(self.audio_config).copy(),
                "dim": self.dim, "phase": self.phase, "stats": stats}
