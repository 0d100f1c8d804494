"""TFLiteConverter set up per mode, and the int8 path that edits activation ranges or
keeps layers in float32: calibrate -> set the ranges -> quantize (LiteRT's own pieces)."""

from __future__ import annotations

from tf_melgan.cli import native_logs_silenced
from tf_melgan.deploy.convert import ranges
from tf_melgan.deploy.convert.errors import ConversionError
from tf_melgan.deploy.manifest import SIGNATURE

# --float_layers keywords: 'output' = the last conv, the tanh and the waveform tensor (the
# signature's output, named after the call, without the model's scope).
FLOAT_LAYER_KEYWORDS = {"output": ("conv_post", "Tanh", "StatefulPartitionedCall")}


def float_tensor_names(tensor_names, patterns) -> list[str]:
    """The tensors of an int8 model to keep in float32: those whose name contains one of
    `patterns` (layer names such as 'up_3', 'res_3_', 'conv_pre', or a keyword of
    FLOAT_LAYER_KEYWORDS). Raises ConversionError for a pattern that matches nothing."""
    chosen = []
    for pattern in patterns:
        keys = FLOAT_LAYER_KEYWORDS.get(pattern, (pattern,))
        found = [n for n in tensor_names if any(k in n for k in keys)]
        if not found:
            raise ConversionError(
                f"--float_layers '{pattern}' matches no tensor of the model (layer names: "
                f"conv_pre, up_I, res_I_J, conv_post; keywords: {sorted(FLOAT_LAYER_KEYWORDS)})")
        chosen += [n for n in found if n not in chosen]
    return chosen


def make_converter(saved_model: str, mode: str, representative=None, int8_io: bool = False):
    """A TFLiteConverter for `saved_model` set up for `mode` (what every conversion here
    and the QuantizationDebugger runs). `representative`: for int8, a callable yielding
    {INPUT_NAME: mel} calibration inputs."""
    import tensorflow as tf
    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model,
                                                         signature_keys=[SIGNATURE])
    if mode != "float32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if mode == "fp16":
        converter.target_spec.supported_types = [tf.float16]
    elif mode == "int8":
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if int8_io:
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
    return converter


def convert_saved_model(saved_model: str, mode: str, representative=None,
                        int8_io: bool = False, float_layers=(),
                        activation_ranges=None) -> bytes:
    """The .tflite bytes of `saved_model` in `mode`. int8 only: `activation_ranges`, a
    function of the calibrated flatbuffer's bytes returning {tensor index: (lo, hi)}
    (e.g. ranges.percentile_ranges over the calibration set), replaces the converter's
    min/max ranges; with `float_layers`, the ops whose tensors match them
    (float_tensor_names) stay float32 (QUANTIZE / DEQUANTIZE ops join the two parts)."""
    if (float_layers or activation_ranges is not None) and mode != "int8":
        raise ValueError("float_layers and percentile ranges need mode 'int8'")
    if not float_layers and activation_ranges is None:
        with native_logs_silenced():  # the quantizer prints 'fully_quantize: 0, ...'
            return make_converter(saved_model, mode, representative, int8_io).convert()
    calibrated = calibrate(saved_model, representative)
    if activation_ranges is not None:
        calibrated = ranges.with_ranges(calibrated, activation_ranges(calibrated))
    names = (float_tensor_names(ranges.tensor_names(calibrated), float_layers)
             if float_layers else None)
    return quantize_calibrated(calibrated, int8_io, names)


def calibrate(saved_model: str, representative) -> bytes:
    """The float model with every tensor's calibration min/max recorded: the first half of
    what an int8 `convert()` does (quantize_calibrated is the second). Private
    `_experimental_calibrate_only`: the switch LiteRT's own QuantizationDebugger uses; no
    public API stops the converter between calibrating and quantizing. Checked with
    TF 2.21.0."""
    converter = make_converter(saved_model, "int8", representative)
    converter._experimental_calibrate_only = True
    return converter.convert()


def quantize_calibrated(calibrated: bytes, int8_io: bool = False, denylist=None) -> bytes:
    """Full-integer int8 model from a calibrated one, as TFLiteConverter.convert() makes it
    (the MLIR quantizer), with the tensors named in `denylist` kept in float32. Private
    `tensorflow.lite.python.convert.mlir_quantize`: the second half of convert() (and of
    the QuantizationDebugger), not exported under tf.lite. Checked with TF 2.21.0."""
    import tensorflow as tf
    from tensorflow.lite.python import convert as lite_convert
    io_type = tf.int8 if int8_io else tf.float32
    with native_logs_silenced():  # it prints 'fully_quantize: 0, inference_type: 6, ...'
        return lite_convert.mlir_quantize(calibrated, input_data_type=io_type,
                                          output_data_type=io_type, denylisted_nodes=denylist)
