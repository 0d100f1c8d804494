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

The primitives (`quantize_kernel`, `quantize_constant`, `ActivationQuantizer`) are
tf_melgan.fake_quant's, below the layers; this module calibrates, stores and loads the
ranges, above tf_melgan.checkpoint. Gradients are straight-through
(tf.quantization.fake_quant_*: identity inside the range, zero outside). Activation ranges are calibrated on the float model as the converter does
(the [100 - p, p] percentiles, tf_melgan.deploy.convert.ranges) and then frozen; they live in
MODEL_DIR/qat_ranges.json beside the weights, which stay plain float weights.
"""

from __future__ import annotations

import json
import os

import numpy as np
import tensorflow as tf

from tf_melgan.atomic import write_text
from tf_melgan.checkpoint import load_generator

RANGES_FILE = "qat_ranges.json"


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
    # Deferred: tf_melgan.deploy.convert needs ai-edge-litert (the [litert] extra).
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
    """(generator, config): the quantization-aware generator of a model dir (a path: a
    shipped vocoder's name is resolved by the caller) with its qat_ranges.json, ranges set;
    (None, None) when the dir has no QAT ranges."""
    ranges = load_ranges(model_dir)
    if ranges is None:
        return None, None
    generator, config = load_generator(model_dir, which, fold=False, quantize=True)
    set_ranges(generator, ranges)
    return (generator.folded() if fold else generator), config

