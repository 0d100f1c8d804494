"""UnivNet's multi-resolution spectrogram discriminator (Jang et al., Interspeech 2021,
arXiv 2106.07889): per STFT resolution, 2-D convs over the linear magnitude |STFT|.

Cheap beside the waveform discriminators (its input is a few hundred frames, not 8192
samples), and it sees what a mel cannot: the harmonics above ~1 kHz, each in its own bin.
Laid out as ParallelWaveGAN's `UnivNetSpectralDiscriminator` ([frames, bins]: kernels of
3 frames x 9 bins, strides over frequency), with UnivNet's zero 'same' padding.
"""

from __future__ import annotations

import keras
from keras import ops

from tf_melgan.convs import conv2d
from tf_melgan.layers import ReflectionPad1D

RESOLUTIONS = ((1024, 120, 600), (2048, 240, 1200), (512, 50, 240))  # (n_fft, hop, window)
KERNELS = ((3, 9), (3, 9), (3, 9), (3, 9), (3, 3), (3, 3))  # (frames, bins)
STRIDES = ((1, 1), (1, 2), (1, 2), (1, 2), (1, 1), (1, 1))


def magnitude(audio, n_fft, hop, win):
    """UnivNet's spectrogram of [batch, samples]: reflect-padded by (n_fft - hop) / 2 at each
    end, frames of n_fft every `hop` with a periodic Hann window of `win` samples centred
    in them (torch.stft(center=False)), |STFT| floored at 1e-7 in power (a zero has no
    gradient). [batch, frames, n_fft // 2 + 1]."""
    pad = (n_fft - hop) // 2
    x = ReflectionPad1D.pad(ops.cast(audio, "float32")[..., None], pad, pad)[..., 0]
    real, imag = ops.stft(x, win, hop, n_fft, window="hann", center=False)
    return ops.sqrt(ops.maximum(real * real + imag * imag, 1e-7))


@keras.saving.register_keras_serializable(package="tf_melgan")
class SpectrogramDiscriminator(keras.layers.Layer):
    """One resolution: |STFT| -> 6 weight-normed Conv2D (KERNELS, STRIDES, `channels`
    wide, the last to 1), LeakyReLU(0.2) after all but the last. Returns every output,
    [batch, frames, bins, channels], the last being the score map."""

    def __init__(self, n_fft, hop, win, channels=32, init="pytorch", init_stddev=0.02,
                 weight_norm=True, **kwargs):
        super().__init__(**kwargs)
        self.n_fft, self.hop, self.win, self.channels = n_fft, hop, win, channels
        self.init, self.init_stddev, self.weight_norm = init, init_stddev, weight_norm
        widths = [channels] * (len(KERNELS) - 1) + [1]
        self.in_channels = [1] + widths[:-1]
        self.convs = [conv2d(c, k, c_in, strides=s, weight_norm=weight_norm, init=init,
                             stddev=init_stddev, name=f"layer_{i}")
                      for i, (c, c_in, k, s) in enumerate(zip(widths, self.in_channels,
                                                              KERNELS, STRIDES))]
        for i, conv in enumerate(self.convs):  # visible to tf.train.Checkpoint
            setattr(self, f"layer_{i}", conv)

    def build(self, input_shape=None):
        for conv, c in zip(self.convs, self.in_channels):
            conv.build((None, None, None, c))
        self.built = True

    def call(self, audio):
        x = magnitude(audio, self.n_fft, self.hop, self.win)[..., None]
        features = []
        for i, (conv, (kt, kf)) in enumerate(zip(self.convs, KERNELS)):
            x = conv(ops.pad(x, [[0, 0], [kt // 2, kt // 2], [kf // 2, kf // 2], [0, 0]]))
            if i < len(self.convs) - 1:
                x = ops.leaky_relu(x, 0.2)
            features.append(x)
        return features

    def get_config(self):
        return {**super().get_config(), "n_fft": self.n_fft, "hop": self.hop, "win": self.win,
                "channels": self.channels, "init": self.init,
                "init_stddev": self.init_stddev, "weight_norm": self.weight_norm}


@keras.saving.register_keras_serializable(package="tf_melgan")
class MultiResolutionSpectrogramDiscriminator(keras.Model):
    """One SpectrogramDiscriminator per (n_fft, hop, window); the input and output layout of
    the other discriminators (waveform [batch, samples] -> a list over resolutions of
    lists of feature maps)."""

    def __init__(self, resolutions=RESOLUTIONS, channels=32, init="pytorch", init_stddev=0.02,
                 weight_norm=True, **kwargs):
        super().__init__(**kwargs)
        self.resolutions = [tuple(int(v) for v in r) for r in resolutions]
        self.resolution_kwargs = dict(channels=channels, init=init, init_stddev=init_stddev,
                                      weight_norm=weight_norm)
        # Feature matching's 4 / (n + 1) over its 5 feature maps (the score map excluded).
        self.feature_layers = len(KERNELS) - 2
        self.discriminators = [SpectrogramDiscriminator(*r, name=f"resolution_{r[0]}",
                                                        **self.resolution_kwargs)
                               for r in self.resolutions]
        for d in self.discriminators:  # visible to tf.train.Checkpoint
            setattr(self, d.name, d)

    @classmethod
    def from_config_dataclass(cls, config, **kwargs):
        return cls(resolutions=config.spectrogram_resolutions,
                   channels=config.spectrogram_channels, init=config.init,
                   init_stddev=config.init_stddev, **kwargs)

    def build(self, input_shape=None):
        for d in self.discriminators:
            d.build()
        self.built = True

    def call(self, audio):
        return [d(audio) for d in self.discriminators]

    def get_config(self):
        return {**super().get_config(), "resolutions": [list(r) for r in self.resolutions],
                **self.resolution_kwargs}
