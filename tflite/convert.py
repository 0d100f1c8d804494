#!/usr/bin/env python
"""Converts a trained tf-melgan generator to a LiteRT (.tflite) vocoder, checks it, and
writes it with a sidecar and a golden pair. Run from the repo root:

    python tflite/convert.py --model_dir runs/demo --output vocoder.tflite             # float32
    python tflite/convert.py --model_dir runs/demo --output vocoder_int8.tflite --quantize
    python tflite/convert.py --model_dir runs/demo --output vocoder_fp16.tflite --fp16

Modes: float32 (default); --quantize: full-integer int8 (int8 weights and activations,
builtin int8 kernels, float32 input/output tensors unless --int8_io), calibrated on real
log-mels of the model's training split (config data.path, or --data) or of
--calibration_audio, each activation's range the 0.01 / 99.99 percentiles of its values
there (--ranges; tflite/ranges.py); --float_layers keeps named layers in float32;
--fp16: float16 weights, float32 compute; --dynamic_range: int8 weights with float
activations (hybrid kernels; much slower under XNNPACK, so only on request).

Path: the generator with weight norm folded, its reflection pads written as slices +
concat (the same numbers; XNNPACK does not take MIRROR_PAD; --mirror_pad keeps it) and its
upsamplers as kernel-2 convs + reshape (polyphase; the same numbers, faster than
TRANSPOSE_CONV), with no run-time shape arithmetic, so a dynamic-length model runs as fast
as a fixed-length one ->
keras.export.ExportArchive (a SavedModel whose signature is named) ->
TFLiteConverter.from_saved_model (--saved_model SM keeps that SavedModel, or converts one
already there, e.g. from `python -m tf_melgan.export`). from_concrete_functions and
tf.saved_model.save with a lambda signature can, in TF 2.21, emit a model without its
weights (VAR_HANDLE / READ_VARIABLE ops, NaN at run time); the op check below catches that.

Written only when every check passes, and all or nothing (each file to a temporary renamed
once all three are complete; a read-only or too-full output place is refused before the
conversion starts):
  OUT.tflite       signature 'serving_default': input 'mel' float32 [1, frames, n_mels]
                   (the log-mel of tf_melgan.audio.log_mel_numpy for the model's audio
                   config), output 'audio' float32 [1, frames * hop], in [-1, 1];
                   frames >= 4 (fewer fail or give a short output: pad the mel)
  OUT.json         sidecar: what tf_melgan.export writes for a SavedModel (audio config,
                   mel recipe and normalisation stats, architecture, receptive field)
                   plus mode, tensor names, frames, ops, measured quality and the
                   tolerances smoke_test.py applies
  OUT.golden.npz   a held-out mel, the Keras model's audio for it and this file's audio

Checks: builtin ops only (no Flex, custom or resource-variable ops); output finite and not
silent on held-out clips; SNR (dB) and log-mel L1 of the .tflite output against the Keras
model on the validation split (LiteRT interpreter, XNNPACK, 2 threads), with a per-mode
SNR floor.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
import warnings

if __package__ in (None, ""):  # run as a script: make `tflite` and `tf_melgan` importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from tf_melgan.cli import (DEBUG_HELP, debug_requested, native_logs_silenced,  # noqa: E402
                           quiet_tensorflow)
from tf_melgan.litert import (ModelCheckError, Vocoder, compute_kernels,  # noqa: E402
                                   golden_path, op_counts, op_problems, read_ops,
                                   sidecar_path, snr_db)
from tf_melgan.progress import Progress  # noqa: E402

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODES = ("float32", "fp16", "int8", "dynamic_range")
SIGNATURE, INPUT_NAME, OUTPUT_NAME = "serving_default", "mel", "audio"

# The SNR (dB) of the .tflite output against the Keras model below which conversion is
# refused: a float32 model off by more than this is a conversion bug; fp16 weights cost
# ~60 dB (63 dB on the demo model); int8 is what it is (~22 dB on the demo model): only
# broken (NaN, silent) output is refused there.
MIN_SNR_DB = {"float32": 50.0, "fp16": 30.0, "int8": 0.0, "dynamic_range": 0.0}
# What smoke_test.py accepts against the golden Keras output (see smoke_tolerance()).
FP32_MAX_ABS, FP16_MAX_ABS, FP16_SNR_FLOOR, INT8_SNR_MARGIN = 1e-4, 1e-2, 30.0, 3.0
SILENT_RMS = 1e-4  # -80 dBFS: a generator whose output is this quiet is broken
GOLDEN_FRAMES = 128
# int8 activation ranges (tflite/ranges.py): each tensor's 0.01 / 99.99 percentiles over the
# calibration set. 'minmax' (the converter's own) leaves a hiss in pauses: docs/BENCHMARKS.md.
DEFAULT_RANGES = "p99.99"


class ConversionError(RuntimeError):
    """Conversion refused; the message says why. Nothing was written."""


def log(msg: str):
    print(msg, flush=True)


def with_progress(representative, total: int, label: str):
    """`representative` (a callable yielding calibration inputs) reporting its progress:
    the converter runs the model on each input, tens of seconds for --quantize."""
    def items():
        progress = Progress(total, label, "segment", seconds=10)
        done = 0
        for done, item in enumerate(representative(), 1):
            yield item
            progress.update(done)
        progress.close(f"{label} {done} segments in {time.monotonic() - progress.started:.0f} s")
    return items


# ---------------------------------------------------------------- data: real log-mels

def resolve_data_path(path, model_dir: str):
    """A config's data.path may be relative to where training ran: try the cwd, the model
    dir and the repo root. A list of paths: each resolved."""
    if isinstance(path, (list, tuple)) and path:
        return [resolve_data_path(p, model_dir) for p in path]
    if not path:
        raise ConversionError("the model's config has no data.path: pass --data")
    candidates = [path] if os.path.isabs(path) else [
        path, os.path.join(model_dir, path), os.path.join(REPO_ROOT, path)]
    for c in candidates:
        if os.path.exists(c):
            return c
    raise ConversionError(f"data path {path} (config data.path) not found (tried "
                          f"{', '.join(candidates)}): pass --data")


def data_splits(config, data_path: str):
    from tf_melgan.data import find_audio_files, split_files
    return split_files(find_audio_files(data_path), config.data.validation_clips)


def _load(path, audio_config):
    from tf_melgan.audio import AudioError, load_audio
    try:
        return load_audio(path, audio_config.sample_rate, audio_config.peak)
    except AudioError as e:
        log(f"  skipping {e}")
        return None


def calibration_mels(files, audio_config, count, frames, fixed, gain_range, seed=0):
    """`count` log-mels [1, frames, n_mels] of random segments of random files, at random
    gains in the training range (the inputs the model was trained on). With `fixed`, every
    segment has exactly `frames` frames (short clips padded with silence); otherwise
    min(frames, clip length)."""
    from tf_melgan.audio import log_mel_numpy
    from tf_melgan.data import crop_or_pad
    hop = audio_config.hop_length
    rng = np.random.default_rng(seed)
    order = [files[i] for i in rng.permutation(len(files))]
    clips, mels, tried = {}, [], 0
    while len(mels) < count and tried < count + len(order):
        path = order[tried % len(order)]
        tried += 1
        if path not in clips:
            clips[path] = _load(path, audio_config)
        audio = clips[path]
        if audio is None or len(audio) < hop:
            continue
        length = frames * hop if fixed else min(frames, len(audio) // hop) * hop
        offset = int(rng.integers(0, max(1, len(audio) - length + 1)))
        segment = crop_or_pad(audio, length, offset) * rng.uniform(*gain_range)
        mels.append(log_mel_numpy(segment, audio_config)[None].astype(np.float32))
    if not mels:
        raise ConversionError("no usable calibration audio")
    return mels


def validation_mels(files, audio_config, count, max_frames, fixed_frames):
    """Log-mels [1, frames, n_mels] of the first `count` held-out clips: their first
    `max_frames` frames, or exactly `fixed_frames` (padded with silence)."""
    from tf_melgan.audio import log_mel_numpy
    from tf_melgan.data import crop_or_pad
    hop, mels, names = audio_config.hop_length, [], []
    for path in files:
        if len(mels) == count:
            break
        audio = _load(path, audio_config)
        if audio is None:
            continue
        if fixed_frames:
            audio = crop_or_pad(audio, fixed_frames * hop)
        else:
            audio = audio[:min(max_frames, len(audio) // hop) * hop]
            if len(audio) < 8 * hop:
                continue
        mels.append(log_mel_numpy(audio, audio_config)[None].astype(np.float32))
        names.append(os.path.basename(path))
    if not mels:
        raise ConversionError("no usable held-out clip for validation")
    return mels, names


# ---------------------------------------------------------------- export and convert

def _sliced_reflection_pad(padding: int):
    """Reflection padding of the time axis as strided slices + one concat: the same numbers
    as tf.pad(mode='REFLECT'), but made of ops XNNPACK takes, where MIRROR_PAD is left to
    the reference kernels and cuts the delegated graph at every one of the generator's
    pads (2 + one per residual block). Measured ~1.5-2x faster end to end."""
    import tensorflow as tf

    def call(x):
        left = [x[:, i:i + 1] for i in range(padding, 0, -1)]
        right = [x[:, -1 - i:-i] for i in range(1, padding + 1)]
        return tf.concat(left + [x] + right, axis=1)

    return call


def _mirror_pad(padding: int):
    """Reflection padding as one MIRROR_PAD op (the model's own gathers become GATHER ops,
    which XNNPACK does not take either)."""
    import tensorflow as tf

    def call(x):
        return tf.pad(x, [[0, 0], [padding, padding], [0, 0]], mode="REFLECT")

    return call


@contextlib.contextmanager
def _patched_calls(model, layer_type, make_call):
    """Within the block, every `layer_type` layer of `model` for which `make_call(layer)`
    returns a function runs that function as its `call`; yields how many were patched."""
    patched = []
    for layer in model._flatten_layers(include_self=False):
        call = make_call(layer) if isinstance(layer, layer_type) else None
        if call is not None:
            layer.call = call
            patched.append(layer)
    try:
        yield len(patched)
    finally:
        for layer in patched:
            del layer.call


def sliced_reflection_pads(model, mirror_pad: bool = False):
    """Within the block, every ReflectionPad1D of `model` pads with slices (see above), or
    with MIRROR_PAD ops if `mirror_pad`."""
    from tf_melgan.layers import ReflectionPad1D
    make = _mirror_pad if mirror_pad else _sliced_reflection_pad
    return _patched_calls(model, ReflectionPad1D, lambda layer: make(layer.padding))


def _polyphase_upsample(layer):
    """A stride-r transposed conv with kernel 2r as a kernel-2 CONV_2D with r * C_out
    channels and a reshape: the same numbers, and XNNPACK runs it faster than
    TRANSPOSE_CONV (see docs/BENCHMARKS.md). output[t*r + j] = x[t] W[j] + x[t-1] W[j+r],
    a conv over x zero-padded by one frame. Other kernel sizes keep TRANSPOSE_CONV."""
    import tensorflow as tf
    k, c_out, c_in = layer.kernel.shape
    r = layer.strides[0]
    if k != 2 * r or layer.dilation_rate != (1,) or tuple(layer.output_padding or (0,)) != (0,):
        return None

    def call(x):
        w = tf.transpose(layer.kernel, [0, 2, 1])                      # [2r, C_in, C_out]
        w_now = tf.reshape(tf.transpose(w[:r], [1, 0, 2]), [c_in, r * c_out])   # x[t]
        w_prev = tf.reshape(tf.transpose(w[r:], [1, 0, 2]), [c_in, r * c_out])  # x[t-1]
        kernel = tf.stack([w_prev, w_now])                             # [2, C_in, r C_out]
        y = tf.nn.conv1d(tf.pad(x, [[0, 0], [1, 1], [0, 0]]), kernel, 1, "VALID")
        if layer.use_bias:
            y = tf.nn.bias_add(y, tf.tile(layer.bias, [r]))
        batch = x.shape[0] or tf.shape(x)[0]  # static in the export: no SHAPE op
        return tf.reshape(y, [batch, -1, c_out])                       # [B, (T+1) r, C_out]

    return call


def polyphase_upsamplers(model):
    """Within the block, `model`'s Conv1DTranspose layers run `_polyphase_upsample`
    (weight norm folded: plain Conv1DTranspose layers)."""
    import keras
    return _patched_calls(model, keras.layers.Conv1DTranspose, _polyphase_upsample)


def export_saved_model(generator, path: str, n_mels: int, frames: int | None = None,
                       mirror_pad: bool = False):
    """SavedModel with signature 'serving_default': 'mel' [1, frames, n_mels] -> 'audio'.
    Reflection pads become slices unless `mirror_pad` (MIRROR_PAD ops)."""
    import keras
    import tensorflow as tf

    def vocode(mel):
        return {OUTPUT_NAME: generator(mel, training=False)}

    with sliced_reflection_pads(generator, mirror_pad), polyphase_upsamplers(generator):
        archive = keras.export.ExportArchive()
        archive.track(generator)
        archive.add_endpoint(name=SIGNATURE, fn=vocode, input_signature=[
            tf.TensorSpec([1, frames, n_mels], tf.float32, name=INPUT_NAME)])
        archive.write_out(path, verbose=False)


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
                        percentile: float | None = None) -> bytes:
    """The .tflite bytes of `saved_model` in `mode`. int8 only: with `percentile`, each
    activation's range is that percentile of its calibration values (tflite/ranges.py)
    instead of their min/max; with `float_layers`, the ops whose tensors match them
    (float_tensor_names) stay float32 (QUANTIZE / DEQUANTIZE ops join the two parts)."""
    if (float_layers or percentile is not None) and mode != "int8":
        raise ValueError("float_layers and percentile ranges need mode 'int8'")
    if not float_layers and percentile is None:
        with native_logs_silenced():  # the quantizer prints 'fully_quantize: 0, ...'
            return make_converter(saved_model, mode, representative, int8_io).convert()
    from tflite import ranges
    calibrated = calibrate(saved_model, representative)
    if percentile is not None:
        found = ranges.percentile_ranges(
            calibrated, (item[INPUT_NAME] for item in representative()), percentile)
        calibrated = ranges.with_ranges(calibrated, found)
    names = (float_tensor_names(ranges.tensor_names(calibrated), float_layers)
             if float_layers else None)
    return quantize_calibrated(calibrated, int8_io, names)


def calibrate(saved_model: str, representative) -> bytes:
    """The float model with every tensor's calibration min/max recorded: the first half of
    what an int8 `convert()` does (quantize_calibrated is the second)."""
    converter = make_converter(saved_model, "int8", representative)
    converter._experimental_calibrate_only = True  # what LiteRT's QuantizationDebugger uses
    return converter.convert()


def quantize_calibrated(calibrated: bytes, int8_io: bool = False, denylist=None) -> bytes:
    """Full-integer int8 model from a calibrated one, as TFLiteConverter.convert() makes it
    (the MLIR quantizer), with the tensors named in `denylist` kept in float32."""
    import tensorflow as tf
    from tensorflow.lite.python import convert as lite_convert
    io_type = tf.int8 if int8_io else tf.float32
    with native_logs_silenced():  # it prints 'fully_quantize: 0, inference_type: 6, ...'
        return lite_convert.mlir_quantize(calibrated, input_data_type=io_type,
                                          output_data_type=io_type, denylisted_nodes=denylist)


def probe_min_frames(model_path: str, hop: int, n_mels: int, limit: int = 64):
    """The fewest frames for which the model gives frames * hop samples (each reflection
    pad needs more frames than it pads: fewer fail, or give a short output with sliced
    pads)."""
    for frames in range(1, limit + 1):
        vocoder = Vocoder(model_path, num_threads=1)
        try:
            out = vocoder(np.full((1, frames, n_mels), -4.0, np.float32))
        except (RuntimeError, ValueError):
            continue
        if out.shape == (1, frames * hop):
            return frames
    raise ConversionError(f"the model runs for no length up to {limit} frames")


def smoke_tolerance(mode: str, golden_snr: float) -> dict:
    """What smoke_test.py accepts for the golden pair (tflite vs Keras output):
    float32: max |diff| <= 1e-4 and SNR >= 60 dB (same math, other kernels);
    fp16: max |diff| <= 1e-2 and SNR >= 30 dB (the fp16 weights' rounding);
    int8 / dynamic range: SNR >= the SNR measured at conversion minus 3 dB (other CPUs
    round int8 differently), at least 0 dB."""
    if mode == "float32":
        return {"max_abs_diff": FP32_MAX_ABS, "min_snr_db": 60.0}
    if mode == "fp16":
        return {"max_abs_diff": FP16_MAX_ABS, "min_snr_db": FP16_SNR_FLOOR}
    return {"max_abs_diff": None,
            "min_snr_db": round(max(0.0, golden_snr - INT8_SNR_MARGIN), 2)}


def _pct(values, q):
    return float(np.percentile(values, q)) if values else float("nan")


def write_outputs(output: str, model_path: str, sidecar: dict, **golden) -> None:
    """Writes OUT.tflite (a copy of `model_path`), OUT.golden.npz (`golden` arrays) and
    OUT.json all or nothing: each to a temporary file, renamed only once all three are
    complete. Raises ConversionError naming the path and the reason (e.g. a full disk)."""
    from tf_melgan.atomic import WriteError, replacing_all

    text = json.dumps(sidecar, indent=2) + "\n"
    need = os.path.getsize(model_path) + sum(a.nbytes for a in golden.values()) + len(text)
    try:
        with replacing_all([output, golden_path(output), sidecar_path(output)],
                           need) as (model_tmp, golden_tmp, sidecar_tmp):
            shutil.copyfile(model_path, model_tmp)
            np.savez(golden_tmp, **golden)
            with open(sidecar_tmp, "w", encoding="utf-8") as f:
                f.write(text)
    except WriteError as e:
        raise ConversionError(str(e)) from None


def check_output(output: str, need_bytes: int | None = None) -> None:
    """Raises ConversionError unless OUT and its sidecars can be written (and, with
    `need_bytes`, that much space is free): checked before the conversion runs."""
    from tf_melgan.atomic import WriteError, check_writable
    try:
        check_writable(output, need_bytes)
    except WriteError as e:
        raise ConversionError(str(e)) from None


# ---------------------------------------------------------------- the whole job

def convert(model_dir: str, output: str, mode: str = "float32", *, frames: int | None = None,
            saved_model: str | None = None, data: str | None = None,
            calibration_audio: str | None = None, num_calibration: int = 32,
            calibration_frames: int = 256, num_validation: int = 4,
            validation_frames: int = 512, which: str = "best", int8_io: bool = False,
            mirror_pad: bool = False, min_snr_db: float | None = None, num_threads: int = 2,
            float_layers=(), ranges: str | None = None, seed: int = 0,
            overwrite: bool = False) -> dict:
    """Converts, checks and writes OUT.tflite, OUT.json, OUT.golden.npz; returns the
    sidecar dict. Raises ConversionError (nothing written) when a check fails, or when
    OUT.tflite exists and not `overwrite` (as tf_melgan.export)."""
    if os.path.exists(output) and not overwrite:
        raise ConversionError(f"{output} exists (pass overwrite=True / --overwrite)")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if int8_io and mode != "int8":
        raise ValueError("int8_io needs mode 'int8'")
    float_layers = tuple(float_layers or ())
    if float_layers and (mode != "int8" or int8_io):
        raise ValueError("float_layers needs mode 'int8' (with float32 input / output)")
    if ranges is not None and mode != "int8":
        raise ValueError("ranges needs mode 'int8'")
    ranges = (ranges or DEFAULT_RANGES) if mode == "int8" else None
    from tflite import ranges as ranges_lib
    percentile = ranges_lib.parse(ranges) if ranges else None
    if frames is not None and frames < 1:
        raise ValueError("frames must be positive")
    import tensorflow as tf

    from tf_melgan.audio import log_mel_numpy
    from tf_melgan.checkpoint import generator_source, load_generator
    from tf_melgan.export import export_metadata

    t0 = time.time()
    check_output(output)  # a read-only place fails now, not after the conversion
    generator_info = generator_source(model_dir, which)
    log(f"generator: {generator_info.describe()} of {model_dir}")
    generator, config = load_generator(model_dir, which=which, fold=True)
    # The .tflite holds about 4 / 2 / 1 byte(s) per weight; golden pair and json are small.
    weight_bytes = {"float32": 4, "fp16": 2}.get(mode, 1) * generator.count_params()
    check_output(output, weight_bytes + (4 << 20))
    audio_config, hop, n_mels = config.audio, config.audio.hop_length, config.audio.n_mels
    if generator.hop_length != hop:
        raise ConversionError(f"generator hop {generator.hop_length} != audio.hop_length {hop}")

    data_path = resolve_data_path(data or config.data.path, model_dir)
    train_files, held_out = data_splits(config, data_path)
    val_mels, val_names = validation_mels(held_out, audio_config, num_validation,
                                          validation_frames, frames)

    if mode == "dynamic_range":
        log("WARNING: --dynamic_range makes hybrid kernels (int8 weights, float activations "
            "quantized on the fly), which XNNPACK runs several times slower than float32 "
            "(3-15x measured). Use --quantize (full int8) or --fp16 for a small, fast model.")

    representative, calibration_info = None, None
    if mode == "int8":
        if calibration_audio:
            from tf_melgan.data import find_audio_files
            calib_files, source = find_audio_files(calibration_audio), calibration_audio
        else:
            calib_files, source = train_files, f"{data_path} (training split)"
        calib = calibration_mels(calib_files, audio_config, num_calibration,
                                 frames or calibration_frames, frames is not None,
                                 (config.data.gain_min, config.data.gain_max), seed)
        calibration_info = {"source": source, "segments": len(calib),
                            "frames": int(sum(m.shape[1] for m in calib))}
        log(f"calibrating on {len(calib)} real log-mel segments from {source}")
        plain = lambda: ({INPUT_NAME: m} for m in calib)  # noqa: E731
        passes = iter(["calibrating:", "activation ranges:"])  # percentiles: a second pass

        def representative():
            return with_progress(plain, len(calib), next(passes, "calibrating:"))()

    keep_saved_model = saved_model is not None
    work = tempfile.mkdtemp(prefix="tf_melgan_tflite_")
    try:
        if saved_model and os.path.isfile(os.path.join(saved_model, "saved_model.pb")):
            log(f"converting the existing SavedModel {saved_model}")
        else:
            saved_model = saved_model or os.path.join(work, "saved_model")
            log("exporting a SavedModel for the converter")
            export_saved_model(generator, saved_model, n_mels, frames, mirror_pad)
        log(f"converting ({mode})")
        try:
            with warnings.catch_warnings():  # calibration runs TF's deprecated tf.lite.Interpreter
                warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated")
                model_bytes = convert_saved_model(saved_model, mode, representative, int8_io,
                                                  float_layers, percentile)
        except ConversionError:
            raise
        except Exception as e:  # the converter's errors are long: keep the first lines
            first = "; ".join(str(e).strip().splitlines()[:3])
            raise ConversionError(f"TFLiteConverter failed: {first}") from e

        # --- op check, on the flatbuffer itself
        ops = read_ops(model_bytes)
        problems = op_problems(ops)
        if problems:
            raise ConversionError("not a builtin-only model with its weights: "
                                  + "; ".join(problems))
        kernels = compute_kernels(ops)
        if mode == "int8":
            # float32 x float32 kernels only where --float_layers asked for them; never
            # hybrid (float32 x int8) ones.
            allowed = ("int8 x int8", "float32 x float32") if float_layers else ("int8 x int8",)
            not_int8 = {k: v for k, v in kernels.items() if not k.endswith(allowed)}
            if not_int8:
                raise ConversionError(f"int8 model has non-int8 kernels {not_int8}")

        tmp_model = os.path.join(work, "model.tflite")
        with open(tmp_model, "wb") as f:
            f.write(model_bytes)
        vocoder = Vocoder(tmp_model, num_threads=num_threads, signature=SIGNATURE)
        if vocoder.input_name != INPUT_NAME or vocoder.output_name != OUTPUT_NAME:
            raise ConversionError(f"signature '{SIGNATURE}' is {vocoder.input_name} -> "
                                  f"{vocoder.output_name}, expected {INPUT_NAME} -> "
                                  f"{OUTPUT_NAME} (a SavedModel not made by this script?)")
        if vocoder.fixed_frames != frames:
            raise ConversionError(f"the SavedModel takes {vocoder.fixed_frames or 'any'} "
                                  f"frames, asked for {frames or 'any'}: export it again")
        min_frames = frames or probe_min_frames(tmp_model, hop, n_mels)

        # --- quality against the Keras model on held-out mels
        snrs, l1_vs_keras, l1_keras, l1_tflite, max_diff = [], [], [], [], 0.0
        all_ref, all_out = [], []
        for mel in val_mels:
            ref = np.asarray(generator(tf.constant(mel), training=False))
            out = vocoder(mel)
            if out.shape != (1, mel.shape[1] * hop):
                raise ConversionError(f"output shape {out.shape} for {mel.shape[1]} frames, "
                                      f"expected (1, {mel.shape[1] * hop})")
            if not np.all(np.isfinite(out)):
                raise ConversionError("the .tflite output is NaN/inf on held-out mels "
                                      "(weights missing or an op broken)")
            all_ref.append(ref.ravel())
            all_out.append(out.ravel())
            snrs.append(snr_db(ref, out))
            max_diff = max(max_diff, float(np.max(np.abs(ref - out))))
            mel_ref = log_mel_numpy(ref[0], audio_config)
            mel_out = log_mel_numpy(out[0], audio_config)
            l1_vs_keras.append(float(np.mean(np.abs(mel_out - mel_ref))))
            l1_keras.append(float(np.mean(np.abs(mel_ref - mel[0]))))
            l1_tflite.append(float(np.mean(np.abs(mel_out - mel[0]))))
        ref_all, out_all = np.concatenate(all_ref), np.concatenate(all_out)
        rms = float(np.sqrt(np.mean(out_all.astype(np.float64) ** 2)))
        if rms < SILENT_RMS:
            keras_rms = float(np.sqrt(np.mean(ref_all.astype(np.float64) ** 2)))
            why = ("the Keras model is silent too: the checkpoint is broken, not the conversion"
                   if keras_rms < SILENT_RMS else f"the Keras model's RMS is {keras_rms:.3g}")
            raise ConversionError(f"the .tflite output is silent on held-out mels (RMS "
                                  f"{rms:.2g} < {SILENT_RMS:g}; {why})")
        snr_all = snr_db(ref_all, out_all)
        floor = MIN_SNR_DB[mode] if min_snr_db is None else min_snr_db
        if snr_all < floor:
            raise ConversionError(f"SNR of the .tflite output against the Keras model is "
                                  f"{snr_all:.1f} dB, below the {mode} floor {floor:g} dB")

        # --- golden pair (what smoke_test.py compares against)
        golden_mel = val_mels[0] if frames else val_mels[0][:, :GOLDEN_FRAMES]
        golden_ref = np.asarray(generator(tf.constant(golden_mel), training=False))
        golden_out = vocoder(golden_mel)
        golden_snr = snr_db(golden_ref, golden_out)

        size = len(model_bytes)
        import ai_edge_litert
        # The fields tf_melgan.export writes for a SavedModel (format, audio config, mel
        # recipe and normalisation stats, architecture, receptive field), so that
        # tf_melgan.synthesize reads this sidecar too; then what is specific to the file.
        sidecar = export_metadata(config, (model_dir, generator_info))
        in_shape = [int(d) for d in vocoder.input["shape_signature"]]
        out_shape = [int(d) for d in vocoder.output["shape_signature"]]
        sidecar["signature"] = {"name": SIGNATURE, "input": INPUT_NAME, "output": OUTPUT_NAME,
                                "input_shape": in_shape, "output_shape": out_shape,
                                "dtype": np.dtype(vocoder.input["dtype"]).name}
        sidecar["min_frames"] = min_frames
        sidecar.update({
            "file": "tflite",
            "model_dir": os.path.abspath(model_dir), "which": which,
            "quantization": mode,
            "float_layers": list(float_layers),
            "activation_ranges": ranges,
            "hop_length": hop, "n_mels": n_mels,
            "input": {"name": INPUT_NAME, "tensor": vocoder.input["name"],
                      "dtype": np.dtype(vocoder.input["dtype"]).name,
                      "shape_signature": in_shape,
                      "quantization": list(vocoder.input["quantization"])},
            "output": {"name": OUTPUT_NAME, "tensor": vocoder.output["name"],
                       "dtype": np.dtype(vocoder.output["dtype"]).name,
                       "shape_signature": out_shape,
                       "quantization": list(vocoder.output["quantization"])},
            "frames": {"mode": "fixed" if frames else "dynamic", "fixed": frames,
                       "min": min_frames},
            "reflection_pad": "MIRROR_PAD" if "MIRROR_PAD" in op_counts(ops) else "slices",
            "size_bytes": size,
            "ops": op_counts(ops),
            "kernels": kernels,
            "calibration": calibration_info,
            "validation": {
                "data": data_path, "clips": val_names,
                "frames": int(sum(m.shape[1] for m in val_mels)),
                "snr_db": round(snr_all, 2),
                "snr_db_per_clip": [round(s, 2) for s in snrs],
                "max_abs_diff": max_diff,
                "mel_l1_vs_keras": float(np.mean(l1_vs_keras)),
                "mel_l1_vs_input": {"keras": float(np.mean(l1_keras)),
                                    "tflite": float(np.mean(l1_tflite))},
                "num_threads": num_threads,
            },
            "golden": {"file": os.path.basename(golden_path(output)),
                       "frames": int(golden_mel.shape[1]), "snr_db": round(golden_snr, 2),
                       "max_abs_diff": float(np.max(np.abs(golden_ref - golden_out)))},
            "smoke_tolerance": smoke_tolerance(mode, golden_snr),
            "versions": {"tensorflow": tf.__version__,
                         "ai_edge_litert": getattr(ai_edge_litert, "__version__", "?")},
        })

        # --- write (only now that every check passed)
        write_outputs(output, tmp_model, sidecar, mel=golden_mel, audio=golden_ref,
                      tflite_audio=golden_out)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    v = sidecar["validation"]
    frames_text = f"fixed {frames} frames" if frames else f"dynamic frames (>= {min_frames})"
    log(f"wrote {output}: {mode}, {size / 1e6:.2f} MB, {frames_text}, signature "
        f"'{SIGNATURE}': {INPUT_NAME} {sidecar['input']['shape_signature']} -> {OUTPUT_NAME}")
    log("ops: builtin only, no Flex / custom / VAR_HANDLE / READ_VARIABLE: "
        + ", ".join(f"{k} {n}" for k, n in sidecar["ops"].items()))
    log(f"kernels: {', '.join(f'{k} ({n})' for k, n in kernels.items())}")
    log(f"vs Keras on {len(val_mels)} held-out clips ({v['frames']} frames): SNR "
        f"{v['snr_db']:.1f} dB (per clip {min(snrs):.1f}..{max(snrs):.1f}), max |diff| "
        f"{max_diff:.2g}, log-mel L1 vs Keras {v['mel_l1_vs_keras']:.4f}; log-mel L1 vs input "
        f"mel: Keras {v['mel_l1_vs_input']['keras']:.4f}, tflite "
        f"{v['mel_l1_vs_input']['tflite']:.4f}")
    log(f"sidecar {sidecar_path(output)}, golden {golden_path(output)} "
        f"({sidecar['golden']['frames']} frames); {time.time() - t0:.0f} s"
        + (f"; SavedModel kept in {saved_model}" if keep_saved_model else ""))
    return sidecar


def main(argv=None):
    p = argparse.ArgumentParser(description="\n\n".join(__doc__.split("\n\n")[:2]),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model_dir", required=True,
                   help="a tf-melgan model dir (config.yaml + weights), or a shipped "
                        "vocoder's name (ljspeech)")
    p.add_argument("--output", required=True,
                   help="OUT.tflite (OUT.json and OUT.golden.npz beside it)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--quantize", action="store_true",
                   help="full-integer int8, calibrated on real log-mels")
    g.add_argument("--fp16", action="store_true", help="float16 weights")
    g.add_argument("--dynamic_range", action="store_true",
                   help="int8 weights, float activations (slow hybrid kernels; not advised)")
    p.add_argument("--int8_io", action="store_true",
                   help="with --quantize: int8 input/output tensors too (default float32)")
    p.add_argument("--float_layers", default="",
                   help="with --quantize: comma list of layers kept in float32, e.g. "
                        "'up_3,res_3_,output' (layer names conv_pre, up_I, res_I_J, "
                        "conv_post; 'output' = conv_post, tanh and the waveform). Slower; "
                        "see docs/BENCHMARKS.md (Quality) for what it buys")
    p.add_argument("--ranges", default=None,
                   help=f"with --quantize: activation ranges, 'pX' = each tensor's "
                        f"[100 - X, X] percentiles over the calibration set, or 'minmax' "
                        f"(the converter's own; a louder noise floor). Default "
                        f"{DEFAULT_RANGES}")
    p.add_argument("--frames", type=int, default=None,
                   help="fixed frame count (default: dynamic, batch 1)")
    p.add_argument("--saved_model", default=None,
                   help="keep the intermediate SavedModel here; if it already holds one, "
                        "convert that instead of exporting again")
    p.add_argument("--which", choices=("best", "latest"), default="best")
    p.add_argument("--data", default=None,
                   help="audio folder replacing the config's data.path (validation split, "
                        "and the calibration split for --quantize)")
    p.add_argument("--calibration_audio", default=None,
                   help="audio folder for int8 calibration (default: the training split)")
    p.add_argument("--num_calibration", type=int, default=32,
                   help="calibration segments (default 32)")
    p.add_argument("--calibration_frames", type=int, default=256,
                   help="frames per calibration segment in dynamic mode (default 256)")
    p.add_argument("--num_validation", type=int, default=4,
                   help="held-out clips compared against Keras (default 4)")
    p.add_argument("--validation_frames", type=int, default=512,
                   help="at most this many frames of each held-out clip (default 512)")
    p.add_argument("--mirror_pad", action="store_true",
                   help="keep reflection pads as MIRROR_PAD ops (default: slices + concat, "
                        "same numbers, which XNNPACK runs; MIRROR_PAD it does not)")
    p.add_argument("--min_snr_db", type=float, default=None,
                   help=f"refuse below this SNR vs Keras (default per mode: {MIN_SNR_DB})")
    p.add_argument("--num_threads", type=int, default=2,
                   help="LiteRT threads for the checks (default 2)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing OUT.tflite (and its .json, .golden.npz)")
    p.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    args = p.parse_args(argv)
    mode = ("int8" if args.quantize else "fp16" if args.fp16
            else "dynamic_range" if args.dynamic_range else "float32")
    debug = debug_requested(args.debug)
    quiet_tensorflow(debug)
    from tf_melgan.pretrained import resolve
    args.model_dir = resolve(args.model_dir)
    try:
        convert(args.model_dir, args.output, mode, frames=args.frames,
                saved_model=args.saved_model, data=args.data,
                calibration_audio=args.calibration_audio,
                num_calibration=args.num_calibration,
                calibration_frames=args.calibration_frames,
                num_validation=args.num_validation, validation_frames=args.validation_frames,
                which=args.which, int8_io=args.int8_io, mirror_pad=args.mirror_pad,
                min_snr_db=args.min_snr_db, num_threads=args.num_threads,
                float_layers=[x for x in args.float_layers.split(",") if x],
                ranges=args.ranges, overwrite=args.overwrite)
    except (ConversionError, ModelCheckError, ValueError, OSError) as e:
        if debug:
            raise
        message = " ".join(str(e).split()) or type(e).__name__  # one line
        print(f"convert.py: refused, nothing written: {message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
