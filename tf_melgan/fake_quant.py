"""The fake-quant primitives of quantization-aware training (tf_melgan.qat): LiteRT's int8
arithmetic, simulated in float with straight-through gradients, for the layers that take a
`quantize` option (tf_melgan.convs, tf_melgan.layers, tf_melgan.generator).

- conv kernels: per output channel, symmetric, [-127, 127] (`quantize_kernel`);
- constant operands of MUL (Snake's a and 1 / a): per tensor, asymmetric, 256 steps
  (`quantize_constant`);
- activations: per tensor, asymmetric, 256 steps (`ActivationQuantizer`); tanh's range is
  LiteRT's fixed one (TANH_RANGE).

Nothing here loads a model: calibration, range files and loading a quantized model dir are
tf_melgan.qat's, which sits above tf_melgan.checkpoint.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

TANH_RANGE = (-1.0, 127.0 / 128.0)  # LiteRT's fixed int8 output range of TANH


def quantize_kernel(kernel):
    """Per-output-channel (last axis) symmetric int8 fake quantization, [-127, 127] steps
    of max|w| / 127: LiteRT's conv weights."""
    axes = list(range(len(kernel.shape) - 1))
    m = tf.stop_gradient(tf.maximum(tf.reduce_max(tf.abs(kernel), axis=axes), 1e-12))
    return tf.quantization.fake_quant_with_min_max_vars_per_channel(
        kernel, -m, m, num_bits=8, narrow_range=True)


def quantize_constant(c):
    """Per-tensor asymmetric int8 fake quantization over [min(0, min c), max(0, max c)]:
    LiteRT's quantization of a constant operand of MUL."""
    lo = tf.stop_gradient(tf.minimum(tf.reduce_min(c), 0.0))
    hi = tf.stop_gradient(tf.maximum(tf.reduce_max(c), 0.0))
    return tf.quantization.fake_quant_with_min_max_vars(c, lo, hi, num_bits=8)


@keras.saving.register_keras_serializable(package="tf_melgan")
class ActivationQuantizer(keras.layers.Layer):
    """Per-tensor asymmetric int8 fake quantization of an activation over [lo, hi]
    (nudged so that 0 is exact, as LiteRT). Identity until a range is set, and while
    `observer` (a callable taking (self, numpy value), set by `calibrate` / `observe`)
    watches the float value: calibration sees the float model, as the converter's does.
    `fixed`: the range is part of the op (tanh), never calibrated."""

    def __init__(self, lo=None, hi=None, fixed=False, **kwargs):
        super().__init__(**kwargs)
        self.lo, self.hi, self.fixed = lo, hi, fixed
        self.observer = None

    @property
    def active(self) -> bool:
        return self.lo is not None and self.observer is None

    def set_range(self, lo, hi):
        if not self.fixed:
            self.lo, self.hi = float(min(lo, 0.0)), float(max(hi, 0.0))

    def call(self, x):
        if self.observer is not None:
            self.observer(self, np.asarray(x))
            return x
        if self.lo is None:
            return x
        y = tf.quantization.fake_quant_with_min_max_args(
            tf.cast(x, "float32"), min=self.lo, max=self.hi, num_bits=8)
        return tf.cast(y, x.dtype)

    def get_config(self):
        return {**super().get_config(), "lo": self.lo, "hi": self.hi, "fixed": self.fixed}
