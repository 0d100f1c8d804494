"""The Fourier-head generator: log-mel [batch, frames, n_mels] -> waveform [batch, frames *
hop], with a frame-rate body (tf_melgan.body) and a Fourier head (tf_melgan.fourier_head).

Not in the paper (generator.head: fourier). The body never upsamples; the head predicts one
STFT frame per mel frame over the mel's pseudo-inverse magnitude, and an inverse STFT with
the mel's own window and hop makes the waveform (Vocos, Siuzdak 2023; FreeV, Lv et al.
2024). It has the interface of tf_melgan.generator.Generator: hop_length, n_mels, folded(),
snakes(), quantizers(), float_layers(), receptive_field and get_config.
"""

from __future__ import annotations

import keras
import numpy as np

from tf_melgan.body import ConvNeXtBody, ResNetBody
from tf_melgan.convs import fold_weight_norm_into
from tf_melgan.fourier_head import FourierHead
from tf_melgan.layers import Snake
from tf_melgan.spectral import as_audio_config
from tf_melgan.streaming import ReceptiveField

BODIES = ("convnext", "resnet")


@keras.saving.register_keras_serializable(package="tf_melgan")
class FourierGenerator(keras.Model):
    # Exported vs Keras: each sample sums 1026 inverse-DFT terms and then overlap-adds, and
    # the SavedModel's graph fuses them differently (~1.2e-5 seen); the waveform
    # generator keeps deploy.saved_model.TOLERANCE.
    export_tolerance = 5e-5

    def __init__(self, audio_config, body="convnext", dim=256, n_blocks=8, intermediate=None,
                 phase="angle", stats=None, weight_norm=True, init="pytorch", init_stddev=0.02,
                 activation="leaky_relu", pad_mode="gather", **kwargs):
        super().__init__(**kwargs)
        if body not in BODIES:
            raise ValueError(f"body must be one of {', '.join(BODIES)}, got {body!r}")
        self.audio_config = as_audio_config(audio_config)
        self.n_mels, self.hop_length = self.audio_config.n_mels, self.audio_config.hop_length
        self.body_type, self.dim, self.n_blocks, self.phase = body, dim, n_blocks, phase
        self.intermediate = intermediate
        self.weight_norm, self.init, self.init_stddev = weight_norm, init, init_stddev
        self.activation, self.pad_mode = activation, pad_mode
        self.stats = None if stats is None else np.asarray(stats, np.float64)
        if body == "convnext":
            self.body = ConvNeXtBody(self.n_mels, dim, n_blocks, intermediate, name="body")
        else:
            self.body = ResNetBody(self.n_mels, dim, n_blocks, weight_norm=weight_norm,
                                   init=init, stddev=init_stddev, activation=activation,
                                   pad_mode=pad_mode, name="body")
        self.head = FourierHead(self.audio_config, dim, phase, stats, name="head")

    @property
    def receptive_field(self) -> ReceptiveField:
        """Frames of mel one output frame depends on, read from the body's and head's layers."""
        left, right = self.head.reach
        left, right = left + self.body.reach, right + self.body.reach
        return ReceptiveField(left, right, float(left), float(right))

    @property
    def min_frames(self) -> int:
        """The fewest mel frames it takes (the body's widest reflection pad, plus one)."""
        return self.body.min_frames

    def describe(self) -> dict:
        """The manifest's generator block: what the architecture is."""
        return {"head": "fourier", "body": self.body_type, "dim": self.dim,
                "n_blocks": self.n_blocks, "intermediate": getattr(self.body, "intermediate", None),
                "phase": self.phase, "activation": self.activation,
                "n_fft": self.audio_config.n_fft, "hop_length": self.hop_length}

    def build(self, input_shape=None):
        self.body.build((None, None, self.n_mels))
        self.head.build((None, None, self.dim))
        self.built = True

    def call(self, mel, training=False, return_phase=False):
        """The waveform; with return_phase, (waveform, the head's phase [batch, frames,
        bins]) for the phase losses."""
        return self.head(self.body(mel), mel, return_phase=return_phase)

    def spectrum(self, mel):
        """(log |X|, real, imag, phase) [batch, frames, bins]: the STFT the head predicts."""
        return self.head.spectrum(self.body(mel), mel)

    def compute_output_shape(self, input_shape):
        frames = input_shape[1]
        return (input_shape[0], None if frames is None else frames * self.hop_length)

    def get_config(self):
        stats = None if self.stats is None else self.stats.tolist()
        return {**super().get_config(), "audio_config": vars(self.audio_config).copy(),
                "body": self.body_type, "dim": self.dim, "n_blocks": self.n_blocks,
                "intermediate": self.intermediate, "phase": self.phase, "stats": stats,
                "weight_norm": self.weight_norm, "init": self.init,
                "init_stddev": self.init_stddev, "activation": self.activation,
                "pad_mode": self.pad_mode}

    def folded(self) -> "FourierGenerator":
        """A copy without weight normalization (the resnet body's); self otherwise."""
        if not (self.weight_norm and self.body_type == "resnet"):
            return self
        config = {**self.get_config(), "weight_norm": False, "name": f"{self.name}_folded"}
        plain = FourierGenerator.from_config(config)
        plain.build((None, None, self.n_mels))
        for source, target in zip(self.snakes(), plain.snakes()):
            target.set_weights(source.get_weights())
        plain.head.set_weights(self.head.get_weights())  # Dense layers: not folded
        return fold_weight_norm_into(self, plain)

    def snakes(self):
        if self.body_type != "resnet":
            return []
        return [a for a in self.body.activations() if isinstance(a, Snake)]

    def quantizers(self):
        return {}  # no QAT model of this generator yet

    def float_layers(self) -> tuple:
        """What `convert --quantize` keeps in float32 (--float_layers patterns): the head
        (prior, magnitude and phase, inverse STFT), whose exp, sin / cos and 1026-term sums
        int8 would swamp, and the output waveform (the signature's tensor, which the
        converter would otherwise requantize after the head); the body runs in int8."""
        return ("head", "output")
