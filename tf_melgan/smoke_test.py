"""Smoke test of a tf-melgan .tflite vocoder with LiteRT alone (no TensorFlow):

    python tflite/smoke_test.py vocoder.tflite [--num_threads 2] [--wav golden.wav]

(`tf-melgan-smoke-test` once installed.) Needs only ai-edge-litert, NumPy, soundfile and
absl-py, plus the files the converter wrote next to the model: vocoder.json (its manifest:
hop, tolerances) and vocoder.golden.npz (a mel and the Keras model's audio for it). Checks:
  - builtin ops only: no Flex / custom ops, no VAR_HANDLE / READ_VARIABLE (weights missing);
  - the named signature ('serving_default': 'mel' -> 'audio') loads with num_threads=2;
  - dynamic models: resized to the minimum frame count, 32 and 862 frames (fixed models:
    their frame count), output length == frames * hop, finite, within [-1, 1], not silent;
    one frame fewer than the minimum does not give a full-length output;
  - the golden mel's output is close to the Keras output, by the manifest's per-mode
    tolerance: float32 max |diff| <= 1e-4 (and SNR >= 60 dB), fp16 max |diff| <= 1e-2 and
    SNR >= 30 dB, int8 SNR >= (SNR measured at conversion - 3 dB).
Prints one line; exits 1 with a one-line message on the first failure (--debug: a
traceback). With TF_MELGAN_SMOKE_ASSERT_NO_TF=1 it also fails if TensorFlow got imported.
"""

from __future__ import annotations

import os
import sys

import numpy as np

from tf_melgan.cli import DEBUG_HELP, debug_requested, new_flags, parse_flags, quiet_tensorflow
from tf_melgan.deploy.litert import ModelCheckError, op_problems, read_ops, snr_db
from tf_melgan.deploy.manifest import golden_path, read_manifest, sidecar_path
from tf_melgan.deploy.vocoder import SynthesisError, load_vocoder
from tf_melgan.errors import TfMelganError
from tf_melgan.pretrained import no_such_model

LENGTHS = (32, 862)  # plus the model's minimum frame count
SILENT_PEAK = 1e-4


class SmokeFailure(TfMelganError):
    pass


def check(condition, message):
    if not condition:
        raise SmokeFailure(message)


def _fit(mel: np.ndarray, frames: int) -> np.ndarray:
    """The golden mel cut or tiled to `frames` frames (real speech, any length)."""
    reps = -(-frames // mel.shape[1])
    return np.tile(mel, (1, reps, 1))[:, :frames]


def run(model_path: str, num_threads: int = 2, wav: str | None = None) -> str:

    check(os.path.exists(model_path), no_such_model(model_path).split(": ", 1)[1])
    check(os.path.isfile(model_path), "not a .tflite file (a folder)")
    problems = op_problems(read_ops(model_path))
    check(not problems, "; ".join(problems))

    manifest = read_manifest(model_path)
    check(manifest is not None and manifest.file == "tflite",
          f"no manifest {sidecar_path(model_path)} next to it (written by the converter)")
    hop, mode, tolerance = manifest.hop, manifest.quantization, manifest.smoke_tolerance

    vocoder = load_vocoder(model_path, num_threads=num_threads)
    runtime = vocoder.runtime
    check((runtime.input_name, runtime.output_name)
          == (manifest.input["name"], manifest.output["name"]),
          f"signature is {runtime.input_name} -> {runtime.output_name}, manifest says "
          f"{manifest.input['name']} -> {manifest.output['name']}")
    check(vocoder.n_mels == manifest.n_mels, f"n_mels {vocoder.n_mels} != {manifest.n_mels}")

    golden_file = golden_path(model_path)
    check(os.path.isfile(golden_file), f"no golden pair {golden_file}")
    golden = np.load(golden_file)
    golden_mel, golden_audio = golden["mel"], golden["audio"]

    if vocoder.fixed_frames:
        lengths = [vocoder.fixed_frames]
    else:
        min_frames = int(manifest.frames["min"])
        lengths = sorted({min_frames, *LENGTHS})
        if min_frames > 1:  # below the minimum: an error or a short output (pad the mel)
            short = min_frames - 1
            try:
                audio = load_vocoder(model_path, num_threads=num_threads)(_fit(golden_mel, short))
                check(audio.shape != (1, short * hop), f"{short} frames gave {short} x hop "
                      f"samples, but the manifest says the minimum is {min_frames}")
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
        sf.write(wav, out[0], int(manifest.audio["sample_rate"]))

    if os.environ.get("TF_MELGAN_SMOKE_ASSERT_NO_TF") == "1":
        loaded = sorted(m for m in sys.modules if m == "tensorflow" or m.startswith("tensorflow."))
        check(not loaded, f"TensorFlow was imported ({', '.join(loaded[:3])})")

    return (f"OK {model_path}: {mode}, frames {'/'.join(map(str, lengths))} -> x{hop} samples, "
            f"finite, in [-1, 1]; golden SNR {snr:.1f} dB (>= {tolerance['min_snr_db']:g}), "
            f"max |diff| {diff:.2g}")


def _define_flags():
    from absl import flags

    fv = new_flags()
    flags.DEFINE_integer("num_threads", 2, "LiteRT threads, as in the converter.",
                         flag_values=fv)
    flags.DEFINE_alias("threads", "num_threads", flag_values=fv)  # the old name
    flags.DEFINE_string("wav", None, "Also write the golden mel's audio here.",
                        flag_values=fv)
    flags.DEFINE_boolean("debug", False, DEBUG_HELP, flag_values=fv)
    return fv


def main(argv) -> int:
    """Runs the CLI on argv (argv[0] is the program, then MODEL.tflite); returns the exit
    status."""
    fv, models = _define_flags(), []
    status = parse_flags(fv, argv, __doc__, positional=models)
    if status is not None:
        return status
    if len(models) != 1:
        print("error: give one MODEL.tflite", file=sys.stderr)
        return 2
    debug = debug_requested(fv.debug)
    quiet_tensorflow(debug)  # LiteRT's own lines; TensorFlow is never imported here
    try:
        print(run(models[0], fv.num_threads, fv.wav))
    except Exception as e:  # noqa: BLE001 - a failure is one line, whatever raised it
        if debug:
            raise
        known = isinstance(e, (SmokeFailure, ModelCheckError, SynthesisError, OSError,
                               KeyError, ValueError))
        message = " ".join(str(e).split()) or type(e).__name__
        print(f"FAIL {models[0]}: {message if known else f'{type(e).__name__}: {message}'}",
              file=sys.stderr)
        return 1
    return 0


def cli():
    sys.exit(main(sys.argv))


if __name__ == "__main__":
    cli()
