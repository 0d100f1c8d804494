"""int8 activation ranges from percentiles of the calibration set.

TFLiteConverter's full-integer calibration gives every activation tensor the range
[min, max] of what it saw. A vocoder's activations are waveform-like: the range is set by
the rarest peaks, so the 256 steps are coarse for everything else, and the rounding noise
of every tensor adds up to a hiss in the output (docs/BENCHMARKS.md, Quality). Here each
tensor's range is instead the [100 - p, p] percentile of its values over the same
calibration inputs (p = 99.99 by default: 1 value in 10,000 is clipped at each end).

How (TFLite's own pieces, nothing re-implemented): the converter calibrates only
(`_experimental_calibrate_only`: the float model with each tensor's min/max recorded);
that model runs in LiteRT's reference kernels with every tensor kept, over the calibration
inputs, and each tensor's values are counted in a fine histogram over its recorded
[min, max]; the percentiles replace min/max in the flatbuffer; the MLIR quantizer
(`mlir_quantize`, what `convert()` runs after calibrating) quantizes with them.
"""

from __future__ import annotations

import numpy as np
from tf_melgan.deploy.litert import read_ops

BINS = 8192           # histogram bins per tensor: 32x finer than an int8 step
MAX_VALUES = 131072   # values per tensor and input counted (a random subset of larger ones)


def parse(spec: str) -> float | None:
    """'minmax' -> None (the converter's ranges); 'pX' (e.g. 'p99.99') -> X, in (50, 100]."""
    if spec == "minmax":
        return None
    try:
        value = float(spec[1:]) if spec.startswith("p") else float("nan")
    except ValueError:
        value = float("nan")
    if not 50.0 < value <= 100.0:
        raise ValueError(f"activation ranges '{spec}': expected 'minmax' or 'pX' with "
                         f"50 < X <= 100 (e.g. p99.99)")
    return value


def _flatbuffer_utils():
    """`tensorflow.lite.tools.flatbuffer_utils`, which reads a .tflite into an editable
    object tree and writes it back: not under the public tf.lite API, but what LiteRT's own
    tools edit models with, and nothing public does it. Checked with TF 2.21.0."""
    from tensorflow.lite.tools import flatbuffer_utils
    return flatbuffer_utils


def _model_object(flatbuffer: bytes):
    return _flatbuffer_utils().convert_bytearray_to_object(flatbuffer)


def _model_bytes(model) -> bytes:
    return bytes(_flatbuffer_utils().convert_object_to_bytearray(model))


def recorded_ranges(calibrated: bytes) -> dict:
    """{tensor index: (min, max)} of subgraph 0's tensors with one recorded range."""
    stats = {}
    for i, t in enumerate(_model_object(calibrated).subgraphs[0].tensors):
        q = t.quantization
        if q is not None and q.min is not None and q.max is not None and len(q.min) == 1:
            stats[i] = (float(q.min[0]), float(q.max[0]))
    return stats


def operators(calibrated: bytes) -> list[tuple[str, list, list]]:
    """(op name, input tensor indices, output tensor indices) of subgraph 0's operators."""
    graph = _model_object(calibrated).subgraphs[0]
    kinds = [op["op"] for op in read_ops(calibrated)][:len(graph.operators)]
    return [(kind, list(op.inputs), list(op.outputs))
            for kind, op in zip(kinds, graph.operators)]


def reference_interpreter(calibrated: bytes):
    """A LiteRT interpreter of `calibrated` on the reference kernels with every tensor kept
    (a delegate would not keep the tensors inside it); `run(interpreter, x)` runs it."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    return Interpreter(
        model_content=calibrated, experimental_preserve_all_tensors=True,
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)


def run(interpreter, x) -> None:
    """Runs `interpreter` on `x`, its one input (any length); read tensors with get_tensor."""
    index = interpreter.get_input_details()[0]["index"]
    interpreter.resize_tensor_input(index, x.shape, strict=False)
    interpreter.allocate_tensors()
    interpreter.set_tensor(index, x)
    interpreter.invoke()


def tensor_names(calibrated: bytes) -> list[str]:
    """Names of the tensors of subgraph 0 of a (calibrated) .tflite flatbuffer."""
    model = _model_object(calibrated)
    return [t.name.decode() if isinstance(t.name, bytes) else t.name
            for t in model.subgraphs[0].tensors]


def percentile_ranges(calibrated: bytes, inputs, percentile: float, seed: int = 0) -> dict:
    """{tensor index: (lo, hi)}: the [100 - percentile, percentile] percentiles of each
    recorded tensor over `inputs` (arrays for the model's one input), widened to hold 0."""
    stats = recorded_ranges(calibrated)
    interpreter = reference_interpreter(calibrated)
    counts = {i: np.zeros(BINS, np.int64) for i in stats}
    rng = np.random.default_rng(seed)
    for x in inputs:
        run(interpreter, x)
        for i, (lo, hi) in stats.items():
            add_to_histogram(counts[i], interpreter.get_tensor(i), lo, hi, rng)
    return {i: percentile_range(counts[i], lo, hi, percentile) for i, (lo, hi) in stats.items()}


def add_to_histogram(counts, values, lo, hi, rng, max_values=MAX_VALUES):
    """Counts `values` (at most `max_values` of them, a random subset of more) into
    `counts`, a histogram of len(counts) bins over [lo, hi] (outliers in the end bins).
    Also tf_melgan.qat's calibration, so that both sides compute the same ranges."""
    v = np.asarray(values).ravel()
    if v.size > max_values:
        v = v[rng.integers(0, v.size, max_values)]
    if hi > lo:
        b = ((v.astype(np.float64) - lo) * (len(counts) / (hi - lo))).astype(np.int64)
        counts += np.bincount(np.clip(b, 0, len(counts) - 1), minlength=len(counts))


def percentile_range(counts, lo, hi, percentile):
    """(lo', hi') from a histogram `counts` of values over [lo, hi]: the lowest bin edge
    with more than 1 - percentile/100 of the values below it and the highest one with as
    many above (bins hold the values' lower edges), widened to hold 0."""
    total, tail = counts.sum(), 1.0 - percentile / 100.0
    if total == 0 or hi <= lo:
        return lo, hi
    cum = np.cumsum(counts)
    step = (hi - lo) / len(counts)
    low_bin = int(np.searchsorted(cum, tail * total, side="right"))
    high_bin = int(np.searchsorted(cum, (1.0 - tail) * total, side="left"))
    new_lo = lo + low_bin * step
    new_hi = lo + min(high_bin + 1, len(counts)) * step
    return min(max(new_lo, lo), 0.0), max(min(new_hi, hi), 0.0)


def with_ranges(calibrated: bytes, ranges: dict) -> bytes:
    """The calibrated flatbuffer with tensor i's recorded range set to ranges[i]."""
    model = _model_object(calibrated)
    tensors = model.subgraphs[0].tensors
    for i, (lo, hi) in ranges.items():
        tensors[i].quantization.min = [float(lo)]
        tensors[i].quantization.max = [float(hi)]
    return _model_bytes(model)
