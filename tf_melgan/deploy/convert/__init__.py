"""The LiteRT converter: a trained generator -> OUT.tflite, checked, with its manifest
(OUT.json) and a golden pair (OUT.golden.npz). The CLI is tf_melgan.convert
(`tf-melgan-convert`, `python tflite/convert.py`); its doc says what is written and checked.

Path: the export generator (deploy.graph: weight norm folded, reflection pads as slices +
concat or MIRROR_PAD, polyphase upsamplers) -> the one SavedModel archive ->
TFLiteConverter.from_saved_model (deploy.convert.quantize) -> checks (deploy.convert.checks)
-> the manifest (deploy.manifest) -> all three files written together, or none.
from_concrete_functions and tf.saved_model.save with a lambda signature can, in TF 2.21,
emit a model without its weights (VAR_HANDLE / READ_VARIABLE ops); the op check catches it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import warnings

import ai_edge_litert
import numpy as np
import tensorflow as tf

from tf_melgan.atomic import WriteError, check_writable, replacing_all
from tf_melgan.checkpoint import generator_source, load_generator
from tf_melgan.data import find_audio_files
from tf_melgan.deploy.convert import checks
from tf_melgan.deploy.convert import data as clips
from tf_melgan.deploy.convert import qat_ranges, quantize
from tf_melgan.deploy.convert import ranges as ranges_lib
from tf_melgan.deploy.convert.errors import ConversionError, log
from tf_melgan.deploy.graph import write_litert_saved_model
from tf_melgan.deploy.litert import LiteRTModel, op_counts
from tf_melgan.deploy.manifest import (INPUT_NAME, OUTPUT_NAME, QAT_RANGES, SIGNATURE,
                                       golden_path, manifest_for, sidecar_path)
from tf_melgan.streaming import MIN_FRAMES

MODES = ("float32", "fp16", "int8", "dynamic_range")
GOLDEN_FRAMES = 128
CALIBRATION = (32, 256)  # int8 calibration: (segments, frames per segment)
QAT_CALIBRATION = (4, 64)
QAT_MATCH_FRAMES = 64  # the mel on which QAT ranges are matched to tensors
# int8 activation ranges (ranges.py): each tensor's 0.01 / 99.99 percentiles over the
# calibration set. 'minmax' (the converter's own) leaves a hiss in pauses: docs/BENCHMARKS.md.
DEFAULT_RANGES = "p99.99"

__all__ = ["ConversionError", "MODES", "DEFAULT_RANGES", "convert", "write_outputs",
           "check_output"]


def _checked_options(output, mode, overwrite, int8_io, float_layers, ranges, frames):
    """(float_layers, ranges spec, percentile) after refusing what cannot work."""
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
    if frames is not None and frames < MIN_FRAMES:
        raise ValueError(f"frames {frames}: a model needs at least {MIN_FRAMES}")
    ranges = (ranges or DEFAULT_RANGES) if mode == "int8" else None
    return float_layers, ranges, ranges_lib.parse(ranges) if ranges else None


def _calibration(config, train_files, data_path, calibration_audio, count, frames,
                 fixed, seed):
    """(representative dataset, the manifest's 'calibration' block)."""
    if calibration_audio:
        files, source = find_audio_files(calibration_audio), calibration_audio
    else:
        files, source = train_files, f"{data_path} (training split)"
    calib = clips.calibration_mels(files, config.audio, count, frames, fixed,
                                  (config.data.gain_min, config.data.gain_max), seed)
    log(f"calibrating on {len(calib)} real log-mel segments from {source}")
    plain = lambda: ({INPUT_NAME: m} for m in calib)  # noqa: E731
    passes = iter(["calibrating:", "activation ranges:"])  # percentiles: a second pass

    def representative():
        return clips.with_progress(plain, len(calib), next(passes, "calibrating:"))()

    info = {"source": source, "segments": len(calib),
            "frames": int(sum(m.shape[1] for m in calib))}
    return representative, info


def _tflite_bytes(saved_model, mode, representative, int8_io, float_layers, percentile,
                  activation_ranges=None):
    """`activation_ranges` (calibrated bytes -> {tensor index: (lo, hi)}, a QAT model's:
    qat_ranges.activation_ranges) replaces the `percentile` ranges."""
    def percentile_ranges(calibrated):  # {tensor index: (lo, hi)}
        mels = (item[INPUT_NAME] for item in representative())
        return ranges_lib.percentile_ranges(calibrated, mels, percentile)

    qat = activation_ranges is not None
    if not qat and percentile is not None:
        activation_ranges = percentile_ranges
    log(f"converting ({mode}{', QAT ranges' if qat else ''})")
    try:
        with warnings.catch_warnings():  # calibration runs TF's deprecated tf.lite.Interpreter
            warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated")
            return quantize.convert_saved_model(saved_model, mode, representative, int8_io,
                                                float_layers, activation_ranges)
    except ConversionError:
        raise
    except Exception as e:  # the converter's errors are long: keep the first lines
        first = "; ".join(str(e).strip().splitlines()[:3])
        raise ConversionError(f"TFLiteConverter failed: {first}") from e


def _tensor(runtime, details, name):
    return {"name": name, "tensor": details["name"], "dtype": np.dtype(details["dtype"]).name,
            "shape_signature": [int(d) for d in details["shape_signature"]],
            "quantization": list(details["quantization"])}


def convert(model_dir: str, output: str, mode: str = "float32", *, frames: int | None = None,
            saved_model: str | None = None, data: str | None = None,
            calibration_audio: str | None = None, num_calibration: int | None = None,
            calibration_frames: int | None = None, num_validation: int = 4,
            validation_frames: int = 512, which: str = "best", int8_io: bool = False,
            mirror_pad: bool = False, min_snr_db: float | None = None, num_threads: int = 2,
            float_layers=(), ranges: str | None = None, seed: int = 0,
            overwrite: bool = False) -> dict:
    """Converts, checks and writes OUT.tflite, OUT.json, OUT.golden.npz; returns the
    manifest as a dict. Raises ConversionError (nothing written) when a check fails, or
    when OUT.tflite exists and not `overwrite`. An int8 conversion of a model dir with QAT
    ranges (MODEL_DIR/qat_ranges.json, training.qat; or of its MODEL_DIR/int8, which is then
    converted instead) uses them unless `ranges` is given,
    and is checked (and its golden pair made) against the fake-quant Keras generator, with
    the floor checks.QAT_MIN_SNR_DB unless `min_snr_db`; the layers it trained in float32
    stay float32 (float_layers: training.qat_float_output, qat_float_stages)."""
    qat_allowed = mode == "int8" and ranges is None
    float_layers, ranges, percentile = _checked_options(
        output, mode, overwrite, int8_io, float_layers, ranges, frames)
    t0 = time.time()
    check_output(output)  # a read-only place fails now, not after the conversion
    int8_dir = qat_ranges.int8_model_dir(model_dir) if qat_allowed else model_dir
    if int8_dir != model_dir:
        model_dir = int8_dir
        log(f"int8: the quantization-aware generator in {model_dir}")
    source = generator_source(model_dir, which)
    log(f"generator: {source.describe()} of {model_dir}")
    generator, config = load_generator(model_dir, which=which, fold=True)
    if frames is not None and frames < generator.min_frames:
        raise ConversionError(f"frames {frames}: this generator needs at least "
                              f"{generator.min_frames}")
    qat_generator = qat_ranges.load(model_dir, which) if qat_allowed else None
    if qat_generator is not None:
        log(f"QAT model dir: int8 with its activation ranges ({len(qat_generator.quantizers())} "
            f"quantizers); --ranges overrides them")
        if qat_generator.float_output and int8_io:
            raise ConversionError("--int8_io: this QAT model keeps its output layer in "
                                  "float32 (training.qat_float_output), so its output is float32")
        trained_float = [p for p in qat_generator.float_layers() if p not in float_layers]
        if trained_float:  # as it trained (qat_float_output, qat_float_stages)
            float_layers = (*float_layers, *trained_float)
            log(f"QAT with float32 layers: --float_layers {','.join(trained_float)}")
    elif qat_allowed and generator.float_layers():  # the Fourier head: int8 body only
        float_layers = (*float_layers, *(p for p in generator.float_layers()
                                         if p not in float_layers))
        log(f"int8 with float32 layers: --float_layers {','.join(float_layers)}")
    elif qat_allowed:  # e.g. `ljspeech_large`, shipped without an int8 form
        log("WARNING: no quantization-aware form here (training.qat; MODEL_DIR/int8): int8 "
            "from the float weights loses much of a trained vocoder's quality (docs/"
            "BENCHMARKS.md, \"Quantization-aware fine-tuning\"). --fp16 keeps it.")
    # The .tflite holds about 4 / 2 / 1 byte(s) per weight; golden pair and json are small.
    check_output(output, {"float32": 4, "fp16": 2}.get(mode, 1) * generator.count_params()
                 + (4 << 20))
    hop, n_mels = config.audio.hop_length, config.audio.n_mels
    if generator.hop_length != hop:
        raise ConversionError(f"generator hop {generator.hop_length} != audio.hop_length {hop}")
    data_path = clips.resolve_data_path(data or config.data.path, model_dir)
    train_files, held_out = clips.data_splits(config, data_path)
    val_mels, val_names = clips.validation_mels(held_out, config.audio, num_validation,
                                               validation_frames, frames)
    if mode == "dynamic_range":
        log("WARNING: --dynamic_range makes hybrid kernels (int8 weights, float activations "
            "quantized on the fly), which XNNPACK runs several times slower than float32 "
            "(docs/BENCHMARKS.md). Use --quantize (full int8) or --fp16 for a small, fast "
            "model.")
    # A QAT model's trained ranges replace the calibrated ones: the calibration then only
    # has to give the converter a range per tensor (docs/BENCHMARKS.md: the same int8 from
    # 4 x 64 frames as from 32 x 256, in 3% of the time).
    count, length = QAT_CALIBRATION if qat_generator is not None else CALIBRATION
    representative, calibration_info = (None, None) if mode != "int8" else _calibration(
        config, train_files, data_path, calibration_audio, num_calibration or count,
        frames or calibration_frames or length, frames is not None, seed)

    keep_saved_model = saved_model is not None
    work = tempfile.mkdtemp(prefix="tf_melgan_tflite_")
    try:
        if saved_model and os.path.isfile(os.path.join(saved_model, "saved_model.pb")):
            log(f"converting the existing SavedModel {saved_model}")
        else:
            saved_model = saved_model or os.path.join(work, "saved_model")
            log("exporting a SavedModel for the converter")
            write_litert_saved_model(generator, saved_model, n_mels, frames, mirror_pad)
        # Matched by value on a short mel: every tensor of it is kept in memory.
        model_bytes = _tflite_bytes(
            saved_model, mode, representative, int8_io, float_layers, percentile,
            qat_generator and qat_ranges.activation_ranges(
                qat_generator, val_mels[0][:, :frames or QAT_MATCH_FRAMES]))
        ops, kernels = checks.check_ops(model_bytes, mode, float_layers)
        tmp_model = os.path.join(work, "model.tflite")
        with open(tmp_model, "wb") as f:
            f.write(model_bytes)
        runtime = LiteRTModel(tmp_model, num_threads=num_threads, signature=SIGNATURE)
        checks.check_signature(runtime, frames)
        # The generator's own minimum: a sliced pad runs on fewer frames, but wrongly.
        min_frames = frames or max(generator.min_frames,
                                   checks.probe_min_frames(tmp_model, hop, n_mels))

        reference = qat_generator or generator  # a QAT model: the int8 it simulates

        def keras_fn(mel):
            return np.asarray(reference(tf.constant(mel), training=False))

        if qat_generator is not None and min_snr_db is None:
            min_snr_db = checks.QAT_MIN_SNR_DB
        validation = checks.compare_with_keras(keras_fn, runtime, val_mels, config.audio,
                                               mode, min_snr_db)
        if qat_generator is not None:
            validation["reference"] = "Keras fake-quant (tf_melgan.qat)"
        golden_mel = val_mels[0] if frames else val_mels[0][:, :GOLDEN_FRAMES]
        golden_ref, golden_out = keras_fn(golden_mel), runtime(golden_mel)

        manifest = _manifest(
            config, generator, (model_dir, source), output, runtime, model_bytes, ops, kernels,
            quantization=mode, float_layers=list(float_layers),
            activation_ranges=QAT_RANGES if qat_generator else ranges,
            calibration=calibration_info,
            frames={"mode": "fixed" if frames else "dynamic", "fixed": frames,
                    "min": min_frames},
            validation={"data": data_path, "clips": val_names, **validation,
                        "num_threads": num_threads},
            golden=(golden_mel, golden_ref, golden_out))
        write_outputs(output, tmp_model, manifest.to_json(), mel=golden_mel,
                      audio=golden_ref, tflite_audio=golden_out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    _summary(output, manifest, len(val_mels), time.time() - t0,
             saved_model if keep_saved_model else None)
    return manifest.to_dict()


def _manifest(config, generator, source, output, runtime, model_bytes, ops, kernels, *, golden,
              quantization, **fields):
    """The .tflite's manifest: the common fields (deploy.manifest.manifest_for), then what
    is specific to this file (tensors, ops, frames, measured quality, smoke tolerances)."""
    golden_mel, golden_ref, golden_out = golden
    golden_snr = checks.snr_db(golden_ref, golden_out)
    hop, n_mels = config.audio.hop_length, config.audio.n_mels
    m = manifest_for(
        config, generator, source, file="tflite",
        quantization=quantization, hop_length=hop, n_mels=n_mels,
        input=_tensor(runtime, runtime.input, INPUT_NAME),
        output=_tensor(runtime, runtime.output, OUTPUT_NAME),
        reflection_pad="MIRROR_PAD" if "MIRROR_PAD" in op_counts(ops) else "slices",
        size_bytes=len(model_bytes), ops=op_counts(ops), kernels=kernels,
        golden={"file": os.path.basename(golden_path(output)),
                "frames": int(golden_mel.shape[1]), "snr_db": round(golden_snr, 2),
                "max_abs_diff": float(np.max(np.abs(golden_ref - golden_out)))},
        smoke_tolerance=checks.smoke_tolerance(quantization, golden_snr),
        versions={"tensorflow": tf.__version__,
                  "ai_edge_litert": getattr(ai_edge_litert, "__version__", "?")},
        **fields)
    m.signature = {"name": SIGNATURE, "input": INPUT_NAME, "output": OUTPUT_NAME,
                   "input_shape": m.input["shape_signature"],
                   "output_shape": m.output["shape_signature"], "dtype": m.input["dtype"]}
    m.min_frames = m.frames["min"]
    return m


def _summary(output, m, clips, seconds, kept_saved_model):
    v, frames = m.validation, m.frames
    frames_text = (f"fixed {frames['fixed']} frames" if frames["fixed"]
                   else f"dynamic frames (>= {frames['min']})")
    log(f"wrote {output}: {m.quantization}, {m.size_bytes / 1e6:.2f} MB, {frames_text}, "
        f"signature '{SIGNATURE}': {INPUT_NAME} {m.input['shape_signature']} -> {OUTPUT_NAME}")
    log("ops: builtin only, no Flex / custom / VAR_HANDLE / READ_VARIABLE: "
        + ", ".join(f"{k} {n}" for k, n in m.ops.items()))
    log(f"kernels: {', '.join(f'{k} ({n})' for k, n in m.kernels.items())}")
    snrs = v["snr_db_per_clip"]
    log(f"vs {v.get('reference', 'Keras')} on {clips} held-out clips ({v['frames']} frames): SNR "
        f"{v['snr_db']:.1f} dB (per clip {min(snrs):.1f}..{max(snrs):.1f}), max |diff| "
        f"{v['max_abs_diff']:.2g}, log-mel L1 vs Keras {v['mel_l1_vs_keras']:.4f}; log-mel "
        f"L1 vs input mel: Keras {v['mel_l1_vs_input']['keras']:.4f}, tflite "
        f"{v['mel_l1_vs_input']['tflite']:.4f}")
    log(f"sidecar {sidecar_path(output)}, golden {golden_path(output)} "
        f"({m.golden['frames']} frames); {seconds:.0f} s"
        + (f"; SavedModel kept in {kept_saved_model}" if kept_saved_model else ""))


def write_outputs(output: str, model_path: str, manifest_json: str, **golden) -> None:
    """Writes OUT.tflite (a copy of `model_path`), OUT.golden.npz (`golden` arrays) and
    OUT.json all or nothing: each to a temporary file, renamed only once all three are
    complete. Raises ConversionError naming the path and the reason (e.g. a full disk)."""
    need = (os.path.getsize(model_path) + sum(a.nbytes for a in golden.values())
            + len(manifest_json))
    try:
        with replacing_all([output, golden_path(output), sidecar_path(output)],
                           need) as (model_tmp, golden_tmp, sidecar_tmp):
            shutil.copyfile(model_path, model_tmp)
            np.savez(golden_tmp, **golden)
            with open(sidecar_tmp, "w", encoding="utf-8") as f:
                f.write(manifest_json)
    except WriteError as e:
        raise ConversionError(str(e)) from None


def check_output(output: str, need_bytes: int | None = None) -> None:
    """Raises ConversionError unless OUT and its sidecars can be written (and, with
    `need_bytes`, that much space is free): checked before the conversion runs."""
    try:
        check_writable(output, need_bytes)
    except WriteError as e:
        raise ConversionError(str(e)) from None
