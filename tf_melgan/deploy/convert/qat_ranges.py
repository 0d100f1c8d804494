"""The converter's side of QAT: a quantization-aware generator's activation ranges
(tf_melgan.qat, MODEL_DIR/qat_ranges.json) on the tensors of its calibrated flatbuffer, so
that the int8 model quantizes with the ranges the generator was trained with instead of
fresh ones: `activation_ranges(generator, mel)` plugs into
quantize.convert_saved_model(activation_ranges=) as ranges.percentile_ranges does.

Tensors are matched by value, not by name (TFLite's names come from auto-numbered Keras
layers and the export's graph rewrites): the calibrated (still float) flatbuffer runs in
LiteRT on one mel with every tensor kept, the Keras generator runs in float on the same mel
with each quantizer recording its input, and a tensor takes the range of the quantizer whose
values it holds (equal size, equal values to a small tolerance; an EXPAND_DIMS / RESHAPE of
a quantized tensor holds the same values and rightly takes the same range). The outputs of
ops that keep their input's scale in LiteRT (the pads' slices and concats, the
upsampler's tile) take their input's range, so that no requantization is added there.
"""

from __future__ import annotations

import os

import numpy as np

from tf_melgan import qat
from tf_melgan.deploy.convert import ranges

# Ops whose int8 output has its input's scale in LiteRT (and holds a subset of its values).
SAME_SCALE_OPS = ("CONCATENATION", "STRIDED_SLICE", "SLICE", "RESHAPE", "EXPAND_DIMS",
                  "SQUEEZE", "TILE", "PAD", "MIRROR_PAD", "GATHER")
TOLERANCE = 1e-3  # of the quantizer's range: float32 Keras vs LiteRT differ by ~1e-6 of it


INT8_DIR = "int8"  # MODEL_DIR/int8: the quantization-aware generator --quantize converts


def int8_model_dir(model_dir: str) -> str:
    """MODEL_DIR/int8 when it is a model dir with QAT ranges (what a shipped vocoder carries:
    its int8 form fine-tuned from the float one, with other weights), else `model_dir` (a
    path: the CLI resolved a shipped vocoder's name)."""
    sub = os.path.join(model_dir, INT8_DIR)
    return sub if os.path.isfile(os.path.join(sub, qat.RANGES_FILE)) else model_dir


def load(model_dir: str, which: str = "best"):
    """The fake-quant generator of a model dir with QAT ranges (tf_melgan.qat.load_quantized:
    folded, ranges set), or None for a model dir without them."""
    return qat.load_quantized(model_dir, which)[0]


def activation_ranges(generator, mel):
    """The converter's `activation_ranges` function for the quantization-aware `generator`
    (ranges set): calibrated flatbuffer bytes -> tensor_ranges on `mel` [1, frames, n_mels]."""
    return lambda calibrated: tensor_ranges(calibrated, generator, mel)


def tensor_ranges(calibrated: bytes, generator, mel) -> dict:
    """{tensor index: (lo, hi)} for the tensors of `calibrated` (a calibrated flatbuffer of
    `generator`'s float model: quantize.calibrate) that hold one of the quantization-aware
    `generator`'s quantized activations, from its ranges; `mel` [1, frames, n_mels] is the
    input both run on. The same shape as ranges.percentile_ranges."""
    recorded = ranges.recorded_ranges(calibrated)
    interpreter = ranges.reference_interpreter(calibrated)
    ranges.run(interpreter, mel)

    quantizers = generator.quantizers()
    names = {id(q): n for n, q in quantizers.items()}
    seen = {}
    qat.observe(generator, [mel], lambda q, v: seen.__setitem__(names[id(q)], v.ravel()))
    by_size = {}
    for name, values in seen.items():
        if quantizers[name].lo is not None:
            by_size.setdefault(values.size, []).append(name)

    # Only TANH's output takes the tanh quantizer's range, and TANH's output no other: inside
    # tanh's linear range (e.g. small weights) conv_post's output holds the same values.
    operators = ranges.operators(calibrated)
    tanh_out = {o for kind, _, outputs in operators if kind == "TANH" for o in outputs}
    found = {}
    for i in recorded:
        v = interpreter.get_tensor(i).ravel()
        best, best_err = None, np.inf
        for name in by_size.get(v.size, ()):
            if (name == "tanh") != (i in tanh_out):
                continue
            q = quantizers[name]
            err = float(np.max(np.abs(v - seen[name]))) / max(q.hi - q.lo, 1e-12)
            if err < best_err:
                best, best_err = name, err
        if best is not None and best_err <= TOLERANCE:
            found[i] = (quantizers[best].lo, quantizers[best].hi)
    for kind, inputs, outputs in operators:
        if kind in SAME_SCALE_OPS:
            source = next((i for i in inputs if i in found), None)
            for out in outputs:
                if source is not None and out in recorded and out not in found:
                    found[out] = found[source]
    return found
