"""Where a model's int8 error comes from: `benchmarks/quality.py --layers`.

- LiteRT's QuantizationDebugger on an int8 conversion of the float weights (min/max
  ranges): per-layer RMSE of the int8 output against the float output of the same layer,
  divided by the quantization scale, the worst layers first;
- int8 models with parts kept in float32 (FLOAT_VARIANTS, tflite/convert.py
  --float_layers, with the default percentile ranges), which quality.py scores beside
  the others.
"""

from __future__ import annotations

import csv
import os
import tempfile
from dataclasses import dataclass

import numpy as np

# name -> the layers kept in float32 (tflite/convert.py --float_layers).
FLOAT_VARIANTS = {
    # Every op float32 except the waveform itself, which stays int8 ('/' is in the name of
    # every tensor of the model's scope, the waveform's is named after the call): what
    # 8-bit output audio costs alone.
    "int8_output_only": ("/",),
    # int8 up to the last residual stack; conv_post, tanh and the waveform in float32.
    "int8_float_output": ("output",),
    # ... and the last stage (upsampler + residual stack) in float32 too.
    "int8_float_last_stage": ("up_3", "res_3_", "output"),
}


def layer_report(saved, calib, top=10):
    """LiteRT QuantizationDebugger on the int8 conversion (min/max ranges) of the
    SavedModel `saved`: worst layers by rmse / scale (0.29 = 1/sqrt(12) is a uniform
    rounding error of one step, the ideal). Returns (the `top` worst rows, the layer count)."""
    import tensorflow as tf
    from tf_melgan.deploy.convert.quantize import make_converter
    from tf_melgan.deploy.manifest import INPUT_NAME
    # The debugger's interpreters do not resize their input: one length for all.
    frames = min(m.shape[1] for m in calib[:8])
    debugger = tf.lite.experimental.QuantizationDebugger(
        converter=make_converter(saved, "int8", lambda: ({INPUT_NAME: m} for m in calib)),
        debug_dataset=lambda: ([m[:, :frames]] for m in calib[:8]))
    debugger.run()
    path = os.path.join(tempfile.mkdtemp(prefix="quality_layers_"), "layers.csv")
    with open(path, "w") as f:
        debugger.layer_statistics_dump(f)
    with open(path) as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        r["rmse_over_scale"] = float(np.sqrt(float(r["mean_squared_error"]))) / float(r["scale"])
    rows.sort(key=lambda r: -r["rmse_over_scale"])
    keep = ("op_name", "tensor_name", "scale", "rmse_over_scale", "mean_error")  # CSV columns
    return [{k: r.get(k) for k in keep} for r in rows[:top]], len(rows)


@dataclass
class LayerVariants:
    variants: dict  # name -> ({label, mode, tflite, activation_ranges, size_mb}, vocoder)
    saved: str      # the float SavedModel they were converted from
    calib: list     # its calibration mels

    def report(self, top=10):
        return layer_report(self.saved, self.calib, top)


def float_layer_variants(generator, config, train_files, work, threads) -> LayerVariants:
    """Converts `generator` once per FLOAT_VARIANTS entry into WORK (percentile ranges from
    32 training-split segments) and loads each as a LiteRT vocoder."""
    from tf_melgan.deploy.convert import DEFAULT_RANGES, ranges
    from tf_melgan.deploy.convert.data import calibration_mels
    from tf_melgan.deploy.convert.quantize import convert_saved_model
    from tf_melgan.deploy.graph import write_litert_saved_model
    from tf_melgan.deploy.manifest import INPUT_NAME
    from tf_melgan.deploy.vocoder import load_vocoder

    ac = config.audio
    calib = calibration_mels(train_files, ac, 32, 256, False,
                             (config.data.gain_min, config.data.gain_max))
    saved = os.path.join(tempfile.mkdtemp(prefix="quality_layers_"), "saved_model")
    write_litert_saved_model(generator, saved, ac.n_mels)
    representative = lambda: ({INPUT_NAME: m} for m in calib)  # noqa: E731

    def percentile_ranges(calibrated):
        return ranges.percentile_ranges(calibrated, calib, ranges.parse(DEFAULT_RANGES))

    variants = {}
    for name, layers in FLOAT_VARIANTS.items():
        path = os.path.join(work, f"vocoder_{name}.tflite")
        with open(path, "wb") as f:
            f.write(convert_saved_model(saved, "int8", representative, float_layers=layers,
                                        activation_ranges=percentile_ranges))
        variant = {"label": f"LiteRT {name} (percentile ranges {DEFAULT_RANGES})",
                   "mode": name, "tflite": path, "activation_ranges": DEFAULT_RANGES,
                   "size_mb": os.path.getsize(path) / 1e6}
        variants[name] = (variant, load_vocoder(path, num_threads=threads))
    return LayerVariants(variants, saved, calib)
