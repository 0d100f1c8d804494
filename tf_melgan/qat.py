"""Quantization-aware training: the converter's int8 arithmetic simulated in Keras.

A generator built with `quantize=True` computes in float what `tf_melgan.convert
--quantize` makes LiteRT compute in int8 (read off the converted graph of the shipped
model), so that fine-tuning can teach it to live with 8 bits (Jacob et al. 2018,
"Quantization and Training of Neural Networks for Efficient Integer-Arithmetic-Only
Inference"):

- conv kernels: per output channel, symmetric, [-127, 127] (`quantize_kernel`);
- constant operands of MUL (Snake's a and 1 / a): per tensor, asymmetric, 256 steps
  (`quantize_constant`);
- activations: per tensor, asymmetric, 256 steps, at every tensor LiteRT requantizes
  (`ActivationQuantizer`): the input mel, every conv output (bias included), Snake's
  a x, sin^2(a x) (SIN and SQUARE run in float between DEQUANTIZE / QUANTIZE), sin^2 / a and
  x + sin^2 / a, LeakyReLU outputs, the residual adds, and tanh (fixed range [-1, 127/128]).
  Pads, slices, concat, reshape and the nearest upsampler's tile keep their input's scale
  in LiteRT: nothing to simulate there.

Gradients are straight-through (tf.quantization.fake_quant_*: identity inside the range,
zero outside). Activation ranges are calibrated on the float model as the converter does
(the [100 - p, p] percentiles, tf_melgan.deploy.convert.ranges) and then frozen; they live in
MODEL_DIR/qat_ranges.json beside the weights, which stay plain float weights.
"""

from __future__ import annotations

import json
import os

import keras
import numpy as np
import tensorflow as tf

RANGES_FILE = "qat_ranges.json"
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


def observe(generator, mels, observer):
    """Runs `generator` (eagerly, float) on each mel with `observer` on every quantizer."""
    quantizers = generator.quantizers()
    for q in quantizers.values():
        q.observer = observer
    try:
        for mel in mels:
            generator(tf.constant(mel), training=False)
    finally:
        for q in quantizers.values():
            q.observer = None


def calibrate(generator, mels, percentile=99.99, max_values=131072, seed=0) -> dict:
    """Sets every activation range of `generator` (built with quantize=True) to the
    [100 - p, p] percentiles of its float values over `mels`: two passes, min/max then a
    histogram, as tf_melgan.deploy.convert.ranges does on the converter's side (its
    add_to_histogram / percentile_range). Returns the ranges."""
    from tf_melgan.deploy.convert.ranges import BINS, add_to_histogram, percentile_range
    names = {id(q): n for n, q in generator.quantizers().items()}
    minmax = {}

    def record(q, v):
        lo, hi = minmax.get(names[id(q)], (np.inf, -np.inf))
        minmax[names[id(q)]] = (min(lo, float(v.min())), max(hi, float(v.max())))

    observe(generator, mels, record)
    counts = {n: np.zeros(BINS, np.int64) for n in minmax}
    rng = np.random.default_rng(seed)

    def count(q, v):
        add_to_histogram(counts[names[id(q)]], v, *minmax[names[id(q)]], rng, max_values)

    observe(generator, mels, count)
    found = {n: percentile_range(counts[n], *minmax[n], percentile) for n in minmax}
    set_ranges(generator, found)
    return ranges_of(generator)


def ranges_of(generator) -> dict:
    """{quantizer name: (lo, hi)} of the calibrated quantizers."""
    return {n: (q.lo, q.hi) for n, q in generator.quantizers().items() if q.lo is not None}


def set_ranges(generator, ranges: dict) -> None:
    """Sets the quantizers named in `ranges` ({name: (lo, hi)}); a name the generator does
    not have is an error (another architecture)."""
    quantizers = generator.quantizers()
    unknown = sorted(set(ranges) - set(quantizers))
    if unknown:
        raise ValueError(f"QAT ranges for quantizers this generator lacks: {unknown[:5]}")
    for name, (lo, hi) in ranges.items():
        quantizers[name].set_range(lo, hi)


def save_ranges(generator, model_dir: str, info: dict | None = None) -> str:
    """Writes MODEL_DIR/qat_ranges.json (atomically); returns its path."""
    from tf_melgan.atomic import write_text
    path = os.path.join(model_dir, RANGES_FILE)
    data = {"ranges": {n: list(r) for n, r in ranges_of(generator).items()},
            **(info or {})}
    write_text(path, json.dumps(data, indent=1) + "\n")
    return path


def load_ranges(model_dir: str) -> dict | None:
    """{name: (lo, hi)} from MODEL_DIR/qat_ranges.json, or None when there is none."""
    path = os.path.join(model_dir, RANGES_FILE)
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        return {n: tuple(r) for n, r in json.load(f)["ranges"].items()}


def load_quantized(model_dir: str, which: str = "best", fold: bool = True):
    """(generator, config): the quantization-aware generator of a model dir with its
    qat_ranges.json, ranges set; (None, None) when the dir has no QAT ranges."""
    from tf_melgan.checkpoint import load_generator
    from tf_melgan.pretrained import resolve
    ranges = load_ranges(resolve(model_dir))
    if ranges is None:
        return None, None
    generator, config = load_generator(model_dir, which, fold=False, quantize=True)
    set_ranges(generator, ranges)
    return (generator.folded() if fold else generator), config

