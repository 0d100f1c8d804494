"""The convolutions: Conv1D written with the ops TF and LiteRT run fastest, PyTorch-style
weight normalization, the transposed conv's polyphase form, the official initialisation;
Conv1D's `quantize` option simulates LiteRT's int8 conv (tf_melgan.fake_quant)."""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import ops

from tf_melgan import fake_quant, native
from tf_melgan.conv_ops import dilated_conv1d, grouped_conv1d


@keras.saving.register_keras_serializable(package="tf_melgan")
class Conv1D(keras.layers.Conv1D):
    """keras Conv1D (same weights, same result) written with the ops TF and LiteRT run fastest.

    - A dilated conv is one Conv2D with dilations, its gradient written out
      (`conv_ops.dilated_conv1d`).
    - The bias is a BiasAdd, which grappler fuses into the conv with a following LeakyRelu.
    - The grouped case runs as `grouped` says (tf_melgan.native.choose_grouped_conv):
      'einsum' (`grouped_conv1d`), 'native' (the native op, where it supports the shapes,
      else einsum) or 'builtin' (TF's grouped conv, cuDNN's on a GPU). MelGAN.compile sets
      it on the discriminator for the device it trains on.
    """

    grouped = "einsum"  # a runtime choice (device, XLA), not part of the config

    def __init__(self, *args, quantize=False, **kwargs):
        super().__init__(*args, **kwargs)
        # quantize: as LiteRT's int8 conv (tf_melgan.fake_quant): int8 kernel, int8 output.
        self.quantize = quantize
        self.output_quantizer = fake_quant.ActivationQuantizer(name="output_q") if quantize else None

    def int8_kernel(self, kernel):
        active = self.quantize and self.output_quantizer.active
        return fake_quant.quantize_kernel(kernel) if active else kernel

    def int8_output(self, outputs):
        return self.output_quantizer(outputs) if self.quantize else outputs

    def quantizers(self) -> dict:
        """{name: ActivationQuantizer} (quantize=True); {} otherwise."""
        return {"output": self.output_quantizer} if self.quantize else {}

    def get_config(self):
        return {**super().get_config(), "quantize": self.quantize}

    def convolution_op(self, inputs, kernel):
        if self.padding != "valid":
            raise ValueError("tf_melgan's Conv1D supports padding='valid' only (pad explicitly)")
        if self.dilation_rate != (1,):
            if self.groups != 1:
                raise ValueError("grouped Conv1D supports dilation 1 only")
            if self.strides != (1,):
                raise ValueError("dilated Conv1D supports stride 1 only")
            return dilated_conv1d(inputs, kernel, self.dilation_rate[0])
        if self.groups == 1:
            return tf.nn.conv1d(inputs, kernel, self.strides[0], "VALID")
        if self.grouped == "builtin":
            return tf.nn.conv1d(inputs, kernel, self.strides[0], "VALID")
        if self.grouped == "native" and native.supports(
                inputs.shape[-1], self.filters, self.groups, inputs.dtype) \
                and native.load() is not None:
            return native.grouped_conv1d(inputs, kernel, self.strides[0], self.groups)
        return grouped_conv1d(inputs, kernel, self.strides[0], self.groups)

    def call(self, inputs):
        # Keras 3.15's Conv1D.call goes to ops.conv directly, bypassing convolution_op.
        outputs = self.convolution_op(inputs, self.int8_kernel(self.kernel))
        return self.int8_output(_bias_and_activation(self, outputs))


def _bias_and_activation(layer, outputs):
    if layer.use_bias:
        outputs = tf.nn.bias_add(outputs, ops.cast(layer.bias, outputs.dtype))
    return outputs if layer.activation is None else layer.activation(outputs)


@keras.saving.register_keras_serializable(package="tf_melgan")
class WeightNormalization(keras.layers.Wrapper):
    """w = g * v / ||v||, with PyTorch `weight_norm(dim=0)` semantics.

    Wraps a Conv1D (kernel [k, in/groups, out]: one g per output channel), a Conv2D
    (kernel [kh, kw, in, out]) or a Conv1DTranspose (kernel [k, out, in]: one g per *input*
    channel, as PyTorch's ConvTranspose1d weight is [in, out, k]). In every layout the norm
    runs over all kernel axes but the last. g starts at ||v||, so the wrapped layer equals the bare one at init.
    The wrapped layer's kernel is v; `fold()` returns a plain layer with w baked in.
    """

    def __init__(self, layer, **kwargs):
        super().__init__(layer, **kwargs)
        if not isinstance(layer, (keras.layers.Conv1D, keras.layers.Conv2D,
                                  keras.layers.Conv1DTranspose)):
            raise TypeError(f"WeightNormalization wraps Conv1D, Conv2D or Conv1DTranspose, "
                            f"got {type(layer).__name__}")
        if layer.padding != "valid":
            raise ValueError("WeightNormalization expects padding='valid' "
                             "(pad explicitly, as the PyTorch model does)")

    def build(self, input_shape):
        if not self.layer.built:
            self.layer.build(input_shape)
        v = self.layer.kernel
        self.g = self.add_weight(
            name="g", shape=(v.shape[-1],),
            initializer=lambda shape, dtype: self._norm(ops.convert_to_tensor(v)),
            trainable=True)
        self.built = True

    @staticmethod
    def _norm(v):
        return ops.sqrt(ops.sum(ops.square(v), axis=tuple(range(len(v.shape) - 1))))

    def normalized_kernel(self):
        v = self.layer.kernel
        return v * (self.g / self._norm(v))

    def call(self, inputs):
        layer = self.layer
        kernel = self.normalized_kernel()
        if isinstance(layer, keras.layers.Conv1DTranspose):
            outputs = ops.conv_transpose(inputs, kernel, strides=layer.strides,
                                         padding="valid", output_padding=layer.output_padding,
                                         dilation_rate=layer.dilation_rate)
        elif isinstance(layer, keras.layers.Conv2D):
            outputs = layer.convolution_op(inputs, kernel)
        else:
            outputs = layer.convolution_op(inputs, layer.int8_kernel(kernel))
            return layer.int8_output(_bias_and_activation(layer, outputs))
        return _bias_and_activation(layer, outputs)

    def compute_output_shape(self, input_shape):
        return self.layer.compute_output_shape(input_shape)

    def quantizers(self) -> dict:
        """The wrapped conv's (Conv1D.quantizers)."""
        return quantizers_of(self.layer)

    def _in_channels(self) -> int:
        """The wrapped conv's input channels, read off its kernel ([k, in/groups, out], or
        [k, out, in] for a transposed conv)."""
        k = self.layer.kernel.shape
        if isinstance(self.layer, keras.layers.Conv1DTranspose):
            return int(k[2])
        return int(k[-2]) * self.layer.groups

    def fold(self):
        """A plain layer of the wrapped type whose kernel is g * v / ||v||."""
        plain = self.layer.__class__.from_config(self.layer.get_config())
        rank = len(self.layer.kernel.shape)  # [batch, (time, (freq,)) channels]
        plain.build((None,) * (rank - 1) + (self._in_channels(),))
        weights = [ops.convert_to_numpy(self.normalized_kernel())]
        if self.layer.use_bias:
            weights.append(ops.convert_to_numpy(self.layer.bias))
        plain.set_weights(weights)
        return plain


INITS = ("pytorch", "normal")


def _initializers(init, stddev, fan_in):
    """'pytorch': what the official code actually trains from. Its `weights_init`
    (normal(0, 0.02)) runs after `weight_norm`, so it only overwrites the derived `weight`,
    which the next forward recomputes from g and v: the effective init is PyTorch's default,
    kaiming_uniform(a=sqrt(5)) = U(+-1/sqrt(fan_in)) for weight and bias.
    'normal': N(0, stddev) kernels and zero biases, the init the code states."""
    if init == "normal":
        return keras.initializers.RandomNormal(0.0, stddev), "zeros"
    if init == "pytorch":
        bound = fan_in ** -0.5
        # Keras' fan_in for Conv1DTranspose is k * out, the same quirk as PyTorch's.
        return (keras.initializers.VarianceScaling(1.0 / 3.0, "fan_in", "uniform"),
                keras.initializers.RandomUniform(-bound, bound))
    raise ValueError(f"unknown init '{init}', expected one of {INITS}")


def conv1d(filters, kernel_size, in_channels, *, strides=1, dilation_rate=1, groups=1,
           weight_norm=True, init="pytorch", stddev=0.02, name=None, quantize=False):
    """A 'valid' Conv1D, optionally weight-normed, initialised like the official code;
    `quantize`: LiteRT's int8 simulated (tf_melgan.fake_quant)."""
    kernel_init, bias_init = _initializers(init, stddev, kernel_size * in_channels // groups)
    layer = Conv1D(filters, kernel_size, strides=strides, dilation_rate=dilation_rate,
                   groups=groups, kernel_initializer=kernel_init, bias_initializer=bias_init,
                   name=None if weight_norm else name, quantize=quantize)
    return WeightNormalization(layer, name=name) if weight_norm else layer


def conv2d(filters, kernel_size, in_channels, *, strides=1, weight_norm=True, init="pytorch",
           stddev=0.02, name=None):
    """A 'valid' Conv2D over [batch, time, freq, channels], optionally weight-normed,
    initialised as conv1d (fan_in = kh * kw * in_channels)."""
    kh, kw = kernel_size
    kernel_init, bias_init = _initializers(init, stddev, kh * kw * in_channels)
    layer = keras.layers.Conv2D(filters, kernel_size, strides=strides,
                                kernel_initializer=kernel_init, bias_initializer=bias_init,
                                name=None if weight_norm else name)
    return WeightNormalization(layer, name=name) if weight_norm else layer


def conv1d_transpose(filters, kernel_size, strides, *, weight_norm=True, init="pytorch",
                     stddev=0.02, polyphase=False, name=None):
    """A 'valid' Conv1DTranspose, optionally weight-normed; `polyphase` (plain layers only:
    weight norm computes its own transposed conv) runs it as PolyphaseConv1DTranspose."""
    kernel_init, bias_init = _initializers(init, stddev, kernel_size * filters)
    layer = (PolyphaseConv1DTranspose if polyphase else keras.layers.Conv1DTranspose)(
        filters, kernel_size, strides=strides, kernel_initializer=kernel_init,
        bias_initializer=bias_init, name=None if weight_norm else name)
    return WeightNormalization(layer, name=name) if weight_norm else layer


@keras.saving.register_keras_serializable(package="tf_melgan")
class PolyphaseConv1DTranspose(keras.layers.Conv1DTranspose):
    """keras Conv1DTranspose (same weights, same numbers) whose stride-r, kernel-2r case runs
    as a kernel-2 conv with r * C_out channels and a reshape, which XNNPACK runs faster than
    TRANSPOSE_CONV (docs/BENCHMARKS.md): output[t*r + j] = x[t] W[j] + x[t-1] W[j+r], a conv
    over x zero-padded by one frame. Other kernel sizes run Keras' transposed conv."""

    def call(self, x):
        k, c_out, c_in = self.kernel.shape
        r = self.strides[0]
        if k != 2 * r or self.dilation_rate != (1,) or tuple(self.output_padding or (0,)) != (0,):
            return super().call(x)
        w = tf.transpose(self.kernel, [0, 2, 1])                                # [2r, C_in, C_out]
        w_now = tf.reshape(tf.transpose(w[:r], [1, 0, 2]), [c_in, r * c_out])   # x[t]
        w_prev = tf.reshape(tf.transpose(w[r:], [1, 0, 2]), [c_in, r * c_out])  # x[t-1]
        kernel = tf.stack([w_prev, w_now])                                      # [2, C_in, r C_out]
        y = tf.nn.conv1d(tf.pad(x, [[0, 0], [1, 1], [0, 0]]), kernel, 1, "VALID")
        if self.use_bias:
            y = tf.nn.bias_add(y, tf.tile(self.bias, [r]))
        batch = x.shape[0] or tf.shape(x)[0]  # static in an export: no SHAPE op
        return tf.reshape(y, [batch, -1, c_out])                                # [B, (T+1) r, C_out]


def quantizers_of(layer) -> dict:
    """{name: ActivationQuantizer} of a layer built with quantize=True (tf_melgan.fake_quant: a
    conv, weight-normed or not, an upsampler, an activation, a residual block, each with a
    `quantizers()` method); {} for any other layer."""
    method = getattr(layer, "quantizers", None)
    return method() if method is not None else {}


def child_layers(layer) -> list:
    """A layer's direct sub-layers in creation order. Private `_layers`: Keras 3 has no
    public list of a plain Layer's children (`Model.layers` exists for Models only, and
    `_flatten_layers` is private too). Checked with Keras 3.15.1 (TF 2.21.0)."""
    return list(layer._layers)


def conv_layers(model):
    """The conv layers of a model in creation order, a WeightNormalization counting as one."""
    found = []

    def walk(layer):
        for sub in child_layers(layer):
            if isinstance(sub, (WeightNormalization, keras.layers.Conv1D,
                                keras.layers.Conv1DTranspose)):
                found.append(sub)
            else:
                walk(sub)

    walk(model)
    return found


def fold_weight_norm_into(source, target):
    """Copies `source`'s weights into `target`, an identical architecture built without
    weight norm, folding every WeightNormalization into a plain kernel."""
    src, dst = conv_layers(source), conv_layers(target)
    if len(src) != len(dst):
        raise ValueError(f"architectures differ: {len(src)} vs {len(dst)} conv layers")
    for s, d in zip(src, dst):
        plain = s.fold() if isinstance(s, WeightNormalization) else s
        d.set_weights(plain.get_weights())
    return target
