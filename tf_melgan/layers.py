"""Building blocks: reflection padding, the nearest-neighbour upsampler, Snake and the
generator's residual block (the convolutions are in tf_melgan.convs); their `quantize`
option simulates LiteRT's int8 (tf_melgan.fake_quant)."""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import ops

from tf_melgan import fake_quant
from tf_melgan.convs import conv1d, quantizers_of


PAD_MODES = ("gather", "slices", "mirror_pad")


@keras.saving.register_keras_serializable(package="tf_melgan")
class ReflectionPad1D(keras.layers.Layer):
    """Reflection padding on the time axis of [batch, time, channels]; the same numbers in
    each `mode`, which only picks the ops (a graph chosen at build time, e.g. for LiteRT):
    - 'gather' (training, SavedModel): gathers + concat, faster than MirrorPad on CPU, and a
      too-short input is still an error (an out-of-range gather index);
    - 'slices': strided slices + one concat, ops XNNPACK takes (it leaves MIRROR_PAD and
      GATHER to the reference kernels, which cuts the delegated graph at every pad);
    - 'mirror_pad': one MIRROR_PAD op."""

    def __init__(self, padding, mode="gather", **kwargs):
        super().__init__(**kwargs)
        if mode not in PAD_MODES:
            raise ValueError(f"ReflectionPad1D mode must be one of {PAD_MODES}, got {mode!r}")
        self.padding, self.mode = int(padding), mode

    def call(self, x):
        p = self.padding
        if self.mode == "slices":
            left = [x[:, i:i + 1] for i in range(p, 0, -1)]
            right = [x[:, -1 - i:-i] for i in range(1, p + 1)]
            return tf.concat(left + [x] + right, axis=1)
        if self.mode == "mirror_pad":
            return tf.pad(x, [[0, 0], [p, p], [0, 0]], mode="REFLECT")
        return self.pad(x, p, p)

    @staticmethod
    def pad(x, left, right):
        """Reflects `left` / `right` samples (tensors allowed) at each end of axis 1."""
        length = tf.shape(x)[1]
        before = tf.gather(x, tf.range(left, 0, -1), axis=1)
        after = tf.gather(x, tf.range(length - 2, length - 2 - right, -1), axis=1)
        return tf.concat([before, x, after], axis=1)

    def compute_output_shape(self, s):
        return (s[0], None if s[1] is None else s[1] + 2 * self.padding, s[2])

    def get_config(self):
        return {**super().get_config(), "padding": self.padding, "mode": self.mode}


@keras.saving.register_keras_serializable(package="tf_melgan")
class NearestUpsampler(keras.layers.Layer):
    """Upsampling by r without a transposed conv: repeat each sample r times, then
    ReflectionPad(r) -> Conv(k 2r+1). A transposed conv adds tones at multiples of its
    input rate (a frame-rate comb in a vocoder); interpolation + conv does not (Pons et
    al., "Upsampling artifacts in neural audio synthesis", ICASSP 2021)."""

    def __init__(self, channels, ratio, in_channels, weight_norm=True, init="pytorch",
                 stddev=0.02, pad_mode="gather", quantize=False, **kwargs):
        super().__init__(**kwargs)
        self.channels, self.ratio, self.in_channels = channels, ratio, in_channels
        self.weight_norm, self.init, self.stddev = weight_norm, init, stddev
        self.pad_mode, self.quantize = pad_mode, quantize
        self.repeat = keras.layers.UpSampling1D(ratio)
        self.pad = ReflectionPad1D(ratio, pad_mode)
        self.conv = conv1d(channels, 2 * ratio + 1, in_channels, weight_norm=weight_norm,
                           init=init, stddev=stddev, quantize=quantize)

    def build(self, input_shape=None):
        self.conv.build((None, None, self.in_channels))
        self.built = True

    def call(self, x):
        return self.conv(self.pad(self.repeat(x)))

    def quantizers(self) -> dict:
        """Its conv's (the repeat and the pad keep their input's scale in LiteRT)."""
        return quantizers_of(self.conv)

    def compute_output_shape(self, s):
        return (s[0], None if s[1] is None else s[1] * self.ratio, self.channels)

    def get_config(self):
        return {**super().get_config(), "channels": self.channels, "ratio": self.ratio,
                "in_channels": self.in_channels, "weight_norm": self.weight_norm,
                "init": self.init, "stddev": self.stddev, "pad_mode": self.pad_mode,
                "quantize": self.quantize}


@keras.saving.register_keras_serializable(package="tf_melgan")
class Snake(keras.layers.Layer):
    """x + sin^2(a x) / a on [..., channels], one trainable a per channel, starting at 1:
    BigVGAN's periodic activation (Lee et al. 2023; Ziyin et al. 2020). Builtin ops only
    (SIN, MUL, ADD), so it converts to LiteRT as is. `quantize`: LiteRT's int8 simulated
    (tf_melgan.fake_quant): a and 1 / a int8 constants, int8 a x, sin^2(a x), sin^2 / a and sum
    (SIN and SQUARE run in float in between)."""

    def __init__(self, channels, quantize=False, **kwargs):
        super().__init__(**kwargs)
        self.channels = int(channels)
        self.quantize = quantize
        self.q = {n: fake_quant.ActivationQuantizer(name=f"{n}_q")
                  for n in ("mul", "square", "div", "add")} if quantize else None

    def build(self, input_shape=None):
        self.alpha = self.add_weight(name="alpha", shape=(self.channels,), initializer="ones")
        self.built = True

    def call(self, x):
        a = ops.cast(self.alpha, x.dtype)
        if not self.quantize:
            return x + ops.square(ops.sin(a * x)) / (a + 1e-9)
        q = self.q
        const = fake_quant.quantize_constant if q["mul"].active else (lambda c: c)
        y = q["square"](ops.square(ops.sin(q["mul"](x * const(a)))))
        return q["add"](x + q["div"](y * const(1.0 / (a + 1e-9))))

    def quantizers(self) -> dict:
        return dict(self.q or {})

    def get_config(self):
        return {**super().get_config(), "channels": self.channels, "quantize": self.quantize}


@keras.saving.register_keras_serializable(package="tf_melgan")
class QuantizedLeakyReLU(keras.layers.LeakyReLU):
    """LeakyReLU with LiteRT's int8 output simulated (tf_melgan.fake_quant)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.output_quantizer = fake_quant.ActivationQuantizer(name="output_q")

    def call(self, x):
        return self.output_quantizer(super().call(x))

    def quantizers(self) -> dict:
        return {"output": self.output_quantizer}


ACTIVATIONS = ("leaky_relu", "snake")


def activation_layer(kind, channels, name=None, quantize=False):
    """The generator's nonlinearity: LeakyReLU(0.2) (the paper) or Snake; `quantize`: with
    LiteRT's int8 simulated (tf_melgan.fake_quant)."""
    if kind == "leaky_relu":
        return (QuantizedLeakyReLU if quantize else keras.layers.LeakyReLU)(0.2, name=name)
    if kind == "snake":
        return Snake(channels, name=name, quantize=quantize)
    raise ValueError(f"unknown activation '{kind}', expected one of {ACTIVATIONS}")


@keras.saving.register_keras_serializable(package="tf_melgan")
class ResidualBlock(keras.layers.Layer):
    """x + block(x) with a learned 1x1 shortcut, as the official `ResnetBlock`:
    block = act -> ReflectionPad(d) -> Conv(k3, dilation d) -> act -> Conv(k1), act being
    LeakyReLU(0.2) (the paper) or Snake (`activation='snake'`)."""

    def __init__(self, channels, dilation, weight_norm=True, init="pytorch", stddev=0.02,
                 activation="leaky_relu", pad_mode="gather", quantize=False, **kwargs):
        super().__init__(**kwargs)
        self.channels, self.dilation = channels, dilation
        self.weight_norm, self.init, self.stddev = weight_norm, init, stddev
        self.activation, self.pad_mode, self.quantize = activation, pad_mode, quantize
        opts = dict(weight_norm=weight_norm, init=init, stddev=stddev, quantize=quantize)
        self.act_1 = activation_layer(activation, channels, quantize=quantize)
        self.pad = ReflectionPad1D(dilation, pad_mode)
        self.conv_dilated = conv1d(channels, 3, channels, dilation_rate=dilation, **opts)
        self.act_2 = activation_layer(activation, channels, quantize=quantize)
        self.conv_1x1 = conv1d(channels, 1, channels, **opts)
        self.shortcut = conv1d(channels, 1, channels, **opts)
        self.add_quantizer = fake_quant.ActivationQuantizer(name="add_q") if quantize else None

    def build(self, input_shape):
        self.act_1.build(input_shape)
        self.conv_dilated.build((None, None, input_shape[-1]))
        self.act_2.build((None, None, self.channels))
        self.conv_1x1.build((None, None, self.channels))
        self.shortcut.build((None, None, input_shape[-1]))
        self.built = True

    def call(self, x):
        y = self.conv_dilated(self.pad(self.act_1(x)))
        y = self.conv_1x1(self.act_2(y))
        y = self.shortcut(x) + y
        return self.add_quantizer(y) if self.quantize else y

    def quantizers(self) -> dict:
        """{name: ActivationQuantizer} of this block (quantize=True), in call order."""
        if not self.quantize:
            return {}
        found = {}
        for name in ("act_1", "conv_dilated", "act_2", "conv_1x1", "shortcut"):
            for sub, q in quantizers_of(getattr(self, name)).items():
                found[f"{name}/{sub}"] = q
        return {**found, "add": self.add_quantizer}

    def compute_output_shape(self, s):
        return (s[0], s[1], self.channels)

    def get_config(self):
        return {**super().get_config(), "channels": self.channels, "dilation": self.dilation,
                "weight_norm": self.weight_norm, "init": self.init, "stddev": self.stddev,
                "activation": self.activation, "pad_mode": self.pad_mode,
                "quantize": self.quantize}
