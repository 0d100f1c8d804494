"""The multi-scale discriminator: waveform [batch, samples] -> per scale, every layer's output."""

from __future__ import annotations

import keras
from keras import ops

from tf_melgan.config import DiscriminatorConfig
from tf_melgan.convs import conv1d, conv_layers
from tf_melgan.layers import ReflectionPad1D

PERIOD_CHANNELS = (1, 4, 16, 32, 32)  # HiFi-GAN's DiscriminatorP widths, over channels


class ConvStack(keras.layers.Layer):
    """A layer whose convs are `self.convs`, taking `self.in_channels` channels."""

    def track_convs(self):
        for j, conv in enumerate(self.convs):  # visible to tf.train.Checkpoint (see Generator)
            setattr(self, f"layer_{j}", conv)

    def build(self, input_shape=None):
        for conv, c in zip(self.convs, self.in_channels):
            conv.build((None, None, c))
        self.built = True


@keras.saving.register_keras_serializable(package="tf_melgan")
class ScaleDiscriminator(ConvStack):
    """One scale (official `NLayerDiscriminator`): ReflectionPad(7) -> Conv(k15, ndf);
    n_layers grouped strided convs (kernel 10*s+1, stride s, zero pad 5*s, groups C_in/4);
    Conv(k5) -> Conv(k3, 1). LeakyReLU(0.2) after all but the last. Returns all outputs."""

    def __init__(self, ndf=16, n_layers=4, downsampling=4, max_channels=1024, init="pytorch",
                 init_stddev=0.02, weight_norm=True, **kwargs):
        super().__init__(**kwargs)
        self.ndf, self.n_layers, self.downsampling = ndf, n_layers, downsampling
        self.max_channels, self.weight_norm = max_channels, weight_norm
        self.init, self.init_stddev = init, init_stddev
        opts = dict(weight_norm=weight_norm, init=init, stddev=init_stddev)
        s = downsampling
        self.pads = [ReflectionPad1D(7)]
        self.convs = [conv1d(ndf, 15, 1, name="layer_0", **opts)]
        self.in_channels = [1]
        channels = ndf
        for n in range(1, n_layers + 1):
            previous, channels = channels, min(channels * s, max_channels)
            self.pads.append(keras.layers.ZeroPadding1D(5 * s))
            self.convs.append(conv1d(channels, 10 * s + 1, previous, strides=s, groups=previous // 4,
                                     name=f"layer_{n}", **opts))
            self.in_channels.append(previous)
        previous, channels = channels, min(channels * 2, max_channels)
        self.pads.append(keras.layers.ZeroPadding1D(2))
        self.convs.append(conv1d(channels, 5, previous, name=f"layer_{n_layers + 1}", **opts))
        self.in_channels.append(previous)
        self.pads.append(keras.layers.ZeroPadding1D(1))
        self.convs.append(conv1d(1, 3, channels, name=f"layer_{n_layers + 2}", **opts))
        self.in_channels.append(channels)
        self.track_convs()

    def call(self, x):
        features = []
        for i, (pad, conv) in enumerate(zip(self.pads, self.convs)):
            x = conv(pad(x))
            if i < len(self.convs) - 1:
                x = ops.leaky_relu(x, 0.2)
            features.append(x)
        return features

    def get_config(self):
        return {**super().get_config(), "ndf": self.ndf, "n_layers": self.n_layers,
                "downsampling": self.downsampling, "max_channels": self.max_channels,
                "init": self.init, "init_stddev": self.init_stddev,
                "weight_norm": self.weight_norm}


def avg_pool_exclude_pad(x):
    """AvgPool1d(kernel 4, stride 2, padding 1, count_include_pad=False) on [batch, time, 1]."""
    padding = [[0, 0], [1, 1], [0, 0]]
    total = ops.average_pool(ops.pad(x, padding), 4, 2, padding="valid")
    count = ops.average_pool(ops.pad(ops.ones_like(x), padding), 4, 2, padding="valid")
    return total / count


@keras.saving.register_keras_serializable(package="tf_melgan")
class MultiScaleDiscriminator(keras.Model):
    """`num_scales` identical discriminators on the waveform, then 2x, 4x, ... average-pooled.

    Input [batch, samples]; output: a list over scales of lists of feature maps
    [batch, time, channels], the last of each being the score map.
    """

    def __init__(self, num_scales=3, ndf=16, n_layers=4, downsampling=4, max_channels=1024,
                 init="pytorch", init_stddev=0.02, weight_norm=True, **kwargs):
        super().__init__(**kwargs)
        self.num_scales = num_scales
        self.scale_kwargs = dict(ndf=ndf, n_layers=n_layers, downsampling=downsampling,
                                 max_channels=max_channels, init=init, init_stddev=init_stddev,
                                 weight_norm=weight_norm)
        self.feature_layers = n_layers  # the official feature-matching weight 4 / (n + 1)
        self.discriminators = [ScaleDiscriminator(name=f"disc_{i}", **self.scale_kwargs)
                               for i in range(num_scales)]
        for i, d in enumerate(self.discriminators):  # visible to tf.train.Checkpoint
            setattr(self, f"disc_{i}", d)

    @classmethod
    def from_config_dataclass(cls, config: DiscriminatorConfig, **kwargs):
        return cls(num_scales=config.num_scales, ndf=config.ndf, n_layers=config.n_layers,
                   downsampling=config.downsampling, max_channels=config.max_channels,
                   init=config.init, init_stddev=config.init_stddev, **kwargs)

    def build(self, input_shape=None):
        for d in self.discriminators:
            d.build()
        self.built = True

    def set_grouped_conv(self, how):
        """How the grouped convs run: 'einsum', 'native' or 'builtin' (see
        tf_melgan.native.choose_grouped_conv, which picks it for a device)."""
        for conv in conv_layers(self):
            getattr(conv, "layer", conv).grouped = how

    def call(self, audio):
        x = ops.expand_dims(ops.cast(audio, self.compute_dtype), -1)
        outputs = []
        for i, d in enumerate(self.discriminators):
            if i:
                x = avg_pool_exclude_pad(x)
            outputs.append(d(x))
        return outputs

    def get_config(self):
        return {**super().get_config(), "num_scales": self.num_scales, **self.scale_kwargs}


@keras.saving.register_keras_serializable(package="tf_melgan")
class PeriodDiscriminator(ConvStack):
    """HiFi-GAN's `DiscriminatorP` (Kong et al. 2020) for one period p: the waveform,
    reflect-padded to a multiple of p, folded into p columns of every p-th sample; each
    column goes through the same convs (HiFi-GAN's (k, 1) Conv2d kernels are Conv1D on
    columns): 4 x Conv(k5, stride 3), Conv(k5), Conv(k3, 1), zero padding k // 2,
    LeakyReLU(0.1) after all but the last. Returns all outputs, [batch * p, time, channels]."""

    def __init__(self, period, channels=32, max_channels=1024, init="pytorch",
                 init_stddev=0.02, weight_norm=True, **kwargs):
        super().__init__(**kwargs)
        self.period, self.channels, self.max_channels = period, channels, max_channels
        self.init, self.init_stddev, self.weight_norm = init, init_stddev, weight_norm
        opts = dict(weight_norm=weight_norm, init=init, stddev=init_stddev)
        widths = [min(channels * m, max_channels) for m in PERIOD_CHANNELS] + [1]
        self.in_channels = [1] + widths[:-1]
        self.kernels = [5] * 5 + [3]
        self.convs = [conv1d(c, k, c_in, strides=3 if i < 4 else 1, name=f"layer_{i}", **opts)
                      for i, (c, c_in, k) in enumerate(zip(widths, self.in_channels,
                                                           self.kernels))]
        self.track_convs()

    def call(self, x):
        p = self.period
        batch, length = ops.shape(x)[0], ops.shape(x)[1]
        x = ReflectionPad1D.pad(x, 0, (-length) % p)
        x = ops.reshape(x, (batch, -1, p))  # [B, T/p, p]: column j holds samples j, j+p, ...
        x = ops.reshape(ops.transpose(x, (0, 2, 1)), (batch * p, -1, 1))
        features = []
        for i, (conv, k) in enumerate(zip(self.convs, self.kernels)):
            x = conv(ops.pad(x, [[0, 0], [k // 2, k // 2], [0, 0]]))
            if i < len(self.convs) - 1:
                x = ops.leaky_relu(x, 0.1)
            features.append(x)
        return features

    def get_config(self):
        return {**super().get_config(), "period": self.period, "channels": self.channels,
                "max_channels": self.max_channels, "init": self.init,
                "init_stddev": self.init_stddev, "weight_norm": self.weight_norm}


@keras.saving.register_keras_serializable(package="tf_melgan")
class MultiPeriodDiscriminator(keras.Model):
    """One PeriodDiscriminator per period; the same input and output layout as
    MultiScaleDiscriminator (a list over periods of lists of feature maps)."""

    def __init__(self, periods=(2, 3, 5, 7, 11), channels=32, max_channels=1024,
                 init="pytorch", init_stddev=0.02, weight_norm=True, **kwargs):
        super().__init__(**kwargs)
        self.periods = [int(p) for p in periods]
        self.period_kwargs = dict(channels=channels, max_channels=max_channels, init=init,
                                  init_stddev=init_stddev, weight_norm=weight_norm)
        self.discriminators = [PeriodDiscriminator(p, name=f"period_{p}", **self.period_kwargs)
                               for p in self.periods]
        # The feature-matching weight 4 / (n + 1) counts its 4 strided convs (HiFi-GAN's).
        self.feature_layers = 4
        for d in self.discriminators:  # visible to tf.train.Checkpoint
            setattr(self, d.name, d)

    @classmethod
    def from_config_dataclass(cls, config: DiscriminatorConfig, **kwargs):
        return cls(periods=config.periods, channels=config.period_channels,
                   max_channels=config.max_channels, init=config.init,
                   init_stddev=config.init_stddev, **kwargs)

    def build(self, input_shape=None):
        for d in self.discriminators:
            d.build()
        self.built = True

    def call(self, audio):
        x = ops.expand_dims(ops.cast(audio, self.compute_dtype), -1)
        return [d(x) for d in self.discriminators]

    def get_config(self):
        return {**super().get_config(), "periods": self.periods, **self.period_kwargs}
