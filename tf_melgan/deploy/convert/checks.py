"""What a .tflite must pass before it is written: builtin ops only (with its weights),
int8 kernels where int8 was asked for, the signature, the shortest input it runs, and its
output against the Keras model's on held-out mels (finite, not silent, an SNR floor)."""

from __future__ import annotations

import numpy as np

from tf_melgan.audio import log_mel_numpy
from tf_melgan.deploy.convert.errors import ConversionError
from tf_melgan.deploy.litert import LiteRTModel, compute_kernels, op_problems, read_ops, snr_db
from tf_melgan.deploy.manifest import INPUT_NAME, OUTPUT_NAME, SIGNATURE

# The SNR (dB) of the .tflite output against the Keras model below which conversion is
# refused: a float32 model off by more is a conversion bug; fp16 weights cost about 60 dB;
# int8 is what it is: only broken (NaN, silent) output is refused there.
MIN_SNR_DB = {"float32": 50.0, "fp16": 30.0, "int8": 0.0, "dynamic_range": 0.0}
# A QAT model dir's int8 .tflite is checked against its fake-quant Keras generator
# (tf_melgan.qat), which simulates that int8 arithmetic: 15-21 dB measured on LJ clips
# (docs/BENCHMARKS.md; float Keras vs int8: ~10 dB). Below 12 dB the ranges did not take
# or the simulation no longer models the graph.
QAT_MIN_SNR_DB = 12.0
# What the smoke test accepts against the golden Keras output (see smoke_tolerance()).
FP32_MAX_ABS, FP16_MAX_ABS, FP16_SNR_FLOOR, INT8_SNR_MARGIN = 1e-4, 1e-2, 30.0, 3.0
SILENT_RMS = 1e-4  # -80 dBFS: a generator whose output is this quiet is broken


def check_ops(model_bytes: bytes, mode: str, float_layers=()) -> tuple[list, dict]:
    """(ops, kernels) of the flatbuffer; raises ConversionError unless it is builtin-only
    with its weights and, for int8, computes in int8 x int8 (float32 x float32 only where
    `float_layers` asked for it; never hybrid float32 x int8)."""
    ops = read_ops(model_bytes)
    problems = op_problems(ops)
    if problems:
        raise ConversionError("not a builtin-only model with its weights: "
                              + "; ".join(problems))
    kernels = compute_kernels(ops)
    if mode == "int8":
        allowed = ("int8 x int8", "float32 x float32") if float_layers else ("int8 x int8",)
        not_int8 = {k: v for k, v in kernels.items() if not k.endswith(allowed)}
        if not_int8:
            raise ConversionError(f"int8 model has non-int8 kernels {not_int8}")
    return ops, kernels


def check_signature(runtime: LiteRTModel, frames) -> None:
    if runtime.input_name != INPUT_NAME or runtime.output_name != OUTPUT_NAME:
        raise ConversionError(f"signature '{SIGNATURE}' is {runtime.input_name} -> "
                              f"{runtime.output_name}, expected {INPUT_NAME} -> "
                              f"{OUTPUT_NAME} (a SavedModel not made by this script?)")
    if runtime.fixed_frames != frames:
        raise ConversionError(f"the SavedModel takes {runtime.fixed_frames or 'any'} "
                              f"frames, asked for {frames or 'any'}: export it again")


def probe_min_frames(model_path: str, hop: int, n_mels: int, limit: int = 64):
    """The fewest frames for which the model gives frames * hop samples (each reflection
    pad needs more frames than it pads: fewer fail, or give a short output with sliced
    pads)."""
    for frames in range(1, limit + 1):
        runtime = LiteRTModel(model_path, num_threads=1)
        try:
            out = runtime(np.full((1, frames, n_mels), -4.0, np.float32))
        except (RuntimeError, ValueError):
            continue
        if out.shape == (1, frames * hop):
            return frames
    raise ConversionError(f"the model runs for no length up to {limit} frames")


def compare_with_keras(keras_fn, runtime, mels, audio_config, mode: str,
                       min_snr_db=None) -> dict:
    """The .tflite's output against the Keras model's on `mels`: raises ConversionError
    for a wrong shape, NaN, silence or an SNR below the mode's floor; returns the measured
    figures (the manifest's 'validation' block, without data and clips)."""

    hop = audio_config.hop_length
    snrs, l1_vs_keras, l1_keras, l1_tflite, max_diff = [], [], [], [], 0.0
    all_ref, all_out = [], []
    for mel in mels:
        ref, out = keras_fn(mel), runtime(mel)
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
    return {"frames": int(sum(m.shape[1] for m in mels)),
            "snr_db": round(snr_all, 2),
            "snr_db_per_clip": [round(s, 2) for s in snrs],
            "max_abs_diff": max_diff,
            "mel_l1_vs_keras": float(np.mean(l1_vs_keras)),
            "mel_l1_vs_input": {"keras": float(np.mean(l1_keras)),
                                "tflite": float(np.mean(l1_tflite))}}


def smoke_tolerance(mode: str, golden_snr: float) -> dict:
    """What the smoke test accepts for the golden pair (tflite vs Keras output):
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
