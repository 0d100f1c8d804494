#!/usr/bin/env python
"""Smoke test of a tf-melgan .tflite vocoder with LiteRT alone (no TensorFlow):

    python tflite/smoke_test.py vocoder.tflite [--num_threads 2] [--wav golden.wav]

Needs only ai-edge-litert, NumPy and soundfile, plus the files convert.py wrote next to the
model: vocoder.json (sidecar: hop, tolerances) and vocoder.golden.npz (a mel and the Keras
model's audio for it). Checks:
  - builtin ops only: no Flex / custom ops, no VAR_HANDLE / READ_VARIABLE (weights missing);
  - the named signature ('serving_default': 'mel' -> 'audio') loads with num_threads=2;
  - dynamic models: resized to the minimum frame count, 32 and 862 frames (fixed models: their
    frame count), output length == frames * hop, finite, within [-1, 1], not silent; one frame
    fewer than the minimum does not give a full-length output (the sidecar's minimum holds);
  - the golden mel's output is close to the Keras output, by the sidecar's per-mode
    tolerance: float32 max |diff| <= 1e-4 (and SNR >= 60 dB), fp16 max |diff| <= 1e-2 and
    SNR >= 30 dB, int8 SNR >= (SNR measured at conversion - 3 dB).
Prints one line; exits 1 with a one-line message on the first failure (--debug: a
traceback). With TF_MELGAN_SMOKE_ASSERT_NO_TF=1 it also fails if TensorFlow got imported.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

if not __package__:  # run as a script from the repo: make tf_melgan importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# tf_melgan's __init__ is lazy: this imports NumPy and ai_edge_litert, not TensorFlow.
from tf_melgan.cli import DEBUG_HELP, debug_requested, quiet_tensorflow  # noqa: E402
from tf_melgan.litert import (ModelCheckError, Vocoder, golden_path,  # noqa: E402
                              op_problems, read_ops, read_sidecar, snr_db)

LENGTHS = (32, 862)  # plus the model's minimum frame count
SILENT_PEAK = 1e-4


class SmokeFailure(Exception):
    pass


def check(condition, message):
    if not condition:
        raise SmokeFailure(message)


def _fit(mel: np.ndarray, frames: int) -> np.ndarray:
    """The golden mel cut or tiled to `frames` frames (real speech, any length)."""
    reps = -(-frames // mel.shape[1])
    return np.tile(mel, (1, reps, 1))[:, :frames]


def run(model_path: str, num_threads: int = 2, wav: str | None = None) -> str:
    check(os.path.isfile(model_path), "no such file")
    problems = op_problems(read_ops(model_path))
    check(not problems, "; ".join(problems))

    sidecar = read_sidecar(model_path)
    hop, mode = int(sidecar["hop_length"]), sidecar["quantization"]
    tolerance = sidecar["smoke_tolerance"]

    signature = sidecar["signature"]
    vocoder = Vocoder(model_path, num_threads=num_threads,
                      signature=signature["name"] if isinstance(signature, dict) else signature)
    check((vocoder.input_name, vocoder.output_name)
          == (sidecar["input"]["name"], sidecar["output"]["name"]),
          f"signature is {vocoder.input_name} -> {vocoder.output_name}, sidecar says "
          f"{sidecar['input']['name']} -> {sidecar['output']['name']}")
    check(vocoder.n_mels == sidecar["n_mels"], f"n_mels {vocoder.n_mels} != {sidecar['n_mels']}")

    golden_file = golden_path(model_path)
    check(os.path.isfile(golden_file), f"no golden pair {golden_file}")
    golden = np.load(golden_file)
    golden_mel, golden_audio = golden["mel"], golden["audio"]

    if vocoder.fixed_frames:
        lengths = [vocoder.fixed_frames]
    else:
        min_frames = int(sidecar["frames"]["min"])
        lengths = sorted({min_frames, *LENGTHS})
        if min_frames > 1:  # below the minimum: an error or a short output (pad the mel)
            short = min_frames - 1
            try:
                audio = Vocoder(model_path, num_threads=num_threads)(_fit(golden_mel, short))
                check(audio.shape != (1, short * hop), f"{short} frames gave {short} x hop "
                      f"samples, but the sidecar says the minimum is {min_frames}")
            except (RuntimeError, ValueError):
                pass
    for frames in lengths:
        try:
            audio = vocoder(_fit(golden_mel, frames))
        except (RuntimeError, ValueError) as e:
            raise SmokeFailure(f"{frames} frames: invoke failed: {e}") from None
        check(audio.shape == (1, frames * hop),
              f"{frames} frames: output shape {audio.shape}, expected (1, {frames * hop})")
        check(np.all(np.isfinite(audio)), f"{frames} frames: output has NaN/inf")
        peak = float(np.max(np.abs(audio)))
        check(peak <= 1.0, f"{frames} frames: output peak {peak:.4f} outside [-1, 1]")
        check(peak > SILENT_PEAK, f"{frames} frames: output is silent (peak {peak:.2g})")

    out = vocoder(golden_mel)
    check(out.shape == golden_audio.shape,
          f"golden: output shape {out.shape}, expected {golden_audio.shape}")
    check(np.all(np.isfinite(out)), "golden: output has NaN/inf")
    diff, snr = float(np.max(np.abs(out - golden_audio))), snr_db(golden_audio, out)
    if tolerance.get("max_abs_diff") is not None:
        check(diff <= tolerance["max_abs_diff"], f"golden ({mode}): max |diff| {diff:.3g} > "
              f"{tolerance['max_abs_diff']:g} against the Keras output")
    check(snr >= tolerance["min_snr_db"], f"golden ({mode}): SNR {snr:.1f} dB < "
          f"{tolerance['min_snr_db']:g} dB against the Keras output")

    if wav:
        import soundfile as sf
        sf.write(wav, out[0], int(sidecar["audio"]["sample_rate"]))

    if os.environ.get("TF_MELGAN_SMOKE_ASSERT_NO_TF") == "1":
        loaded = sorted(m for m in sys.modules if m == "tensorflow" or m.startswith("tensorflow."))
        check(not loaded, f"TensorFlow was imported ({', '.join(loaded[:3])})")

    return (f"OK {model_path}: {mode}, frames {'/'.join(map(str, lengths))} -> x{hop} samples, "
            f"finite, in [-1, 1]; golden SNR {snr:.1f} dB (>= {tolerance['min_snr_db']:g}), "
            f"max |diff| {diff:.2g}")


def main(argv=None):
    p = argparse.ArgumentParser(description="Smoke test of a tf-melgan .tflite vocoder "
                                            "(LiteRT only, no TensorFlow).")
    p.add_argument("model", help="MODEL.tflite (MODEL.json and MODEL.golden.npz beside it)")
    p.add_argument("--num_threads", type=int, default=2,
                   help="LiteRT threads (default 2), as in convert.py")
    p.add_argument("--threads", type=int, dest="num_threads", help=argparse.SUPPRESS)  # old name
    p.add_argument("--wav", default=None, help="also write the golden mel's audio here")
    p.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    args = p.parse_args(argv)
    debug = debug_requested(args.debug)
    quiet_tensorflow(debug)  # LiteRT's own lines; TensorFlow is never imported here
    try:
        print(run(args.model, args.num_threads, args.wav))
    except Exception as e:  # noqa: BLE001 - a failure is one line, whatever raised it
        if debug:
            raise
        known = isinstance(e, (SmokeFailure, ModelCheckError, OSError, KeyError, ValueError))
        message = " ".join(str(e).split()) or type(e).__name__
        print(f"FAIL {args.model}: {message if known else f'{type(e).__name__}: {message}'}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
