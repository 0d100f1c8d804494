"""LiteRT converter: a trained tf-melgan generator -> a checked .tflite vocoder, written with
its manifest and a golden pair. From the repo (or `tf-melgan-convert ...` once installed):

    python tflite/convert.py --model_dir runs/demo --output vocoder.tflite             # float32
    python tflite/convert.py --model_dir runs/demo --output vocoder_int8.tflite --quantize
    python tflite/convert.py --model_dir runs/demo --output vocoder_fp16.tflite --fp16

Modes: float32 (default); --quantize: full-integer int8 (int8 weights and activations,
builtin int8 kernels, float32 input/output tensors unless --int8_io), calibrated on real
log-mels of the model's training split (config data.path, or --data) or of
--calibration_audio, each activation's range the 0.01 / 99.99 percentiles of its values
there (--ranges); --float_layers keeps named layers in float32; --fp16: float16 weights,
float32 compute; --dynamic_range: int8 weights with float activations (hybrid kernels;
much slower under XNNPACK, so only on request).

Graph: weight norm folded, reflection pads as slices + concat (the same numbers; XNNPACK
does not take MIRROR_PAD; --mirror_pad keeps it), upsamplers as kernel-2 convs + reshape
(polyphase; the same numbers, faster than TRANSPOSE_CONV), no run-time shape arithmetic
-> a SavedModel (--saved_model SM keeps it, or converts one already there) ->
TFLiteConverter.from_saved_model.

Written only when every check passes, and all or nothing (a read-only or too-full output
place is refused before the conversion starts):
  OUT.tflite       signature 'serving_default': input 'mel' float32 [1, frames, n_mels]
                   (the log-mel of tf_melgan.audio.log_mel_numpy for the model's audio
                   config), output 'audio' float32 [1, frames * hop], in [-1, 1];
                   frames >= 4 (fewer fail or give a short output: pad the mel)
  OUT.json         the manifest (tf_melgan.deploy.manifest): what a SavedModel export
                   carries (audio config, mel recipe and stats, architecture, receptive
                   field) plus mode, tensor names, frames, ops, measured quality and the
                   tolerances the smoke test applies
  OUT.golden.npz   a held-out mel, the Keras model's audio for it and this file's audio

Checks: builtin ops only (no Flex, custom or resource-variable ops); output finite and not
silent on held-out clips; SNR (dB) and log-mel L1 of the .tflite output against the Keras
model on the validation split (LiteRT interpreter, XNNPACK, 2 threads), with a per-mode
SNR floor.
"""

from __future__ import annotations

import os
import signal
import sys

from tf_melgan.cli import (DEBUG_HELP, ctrl_c_recorded, debug_requested, new_flags, parse_flags,
                           quiet_tensorflow, report)
from tf_melgan.deploy.litert import ModelCheckError
from tf_melgan.pretrained import no_such_model, resolve, shipped_help
from tf_melgan.streaming import MIN_FRAMES

REFUSED = "convert.py: refused, nothing written: "


def _define_flags():
    from absl import flags

    fv = new_flags()
    flags.DEFINE_string("model_dir", None, "A tf-melgan model dir (config.yaml + weights), "
                        f"or {shipped_help()}.", flag_values=fv)
    flags.DEFINE_string("output", None, "OUT.tflite (OUT.json and OUT.golden.npz beside it).",
                        flag_values=fv)
    flags.DEFINE_boolean("quantize", False, "Full-integer int8, calibrated on real log-mels.",
                         flag_values=fv)
    flags.DEFINE_boolean("fp16", False, "float16 weights.", flag_values=fv)
    flags.DEFINE_boolean("dynamic_range", False, "int8 weights, float activations (slow "
                         "hybrid kernels; not advised).", flag_values=fv)
    flags.DEFINE_boolean("int8_io", False, "With --quantize: int8 input/output tensors too "
                         "(default float32).", flag_values=fv)
    flags.DEFINE_string("float_layers", "", "With --quantize: comma list of layers kept in "
                        "float32, e.g. 'up_3,res_3_,output' (layer names conv_pre, up_I, "
                        "res_I_J, conv_post; 'output' = conv_post, tanh and the waveform). "
                        "Slower; see docs/BENCHMARKS.md (Quality) for what it buys.",
                        flag_values=fv)
    flags.DEFINE_string("ranges", None, "With --quantize: activation ranges, 'pX' = each "
                        "tensor's [100 - X, X] percentiles over the calibration set, or "
                        "'minmax' (the converter's own; a louder noise floor). Default "
                        "p99.99.", flag_values=fv)
    flags.DEFINE_integer("frames", None, "Fixed frame count (default: dynamic, batch 1).",
                         lower_bound=1, flag_values=fv)
    flags.DEFINE_string("saved_model", None, "Keep the intermediate SavedModel here; if it "
                        "already holds one, convert that instead of exporting again.",
                        flag_values=fv)
    flags.DEFINE_enum("which", "best", ["best", "latest"], "The best or the latest "
                      "generator of the model dir.", flag_values=fv)
    flags.DEFINE_string("data", None, "Audio folder replacing the config's data.path "
                        "(validation split, and the calibration split for --quantize).",
                        flag_values=fv)
    flags.DEFINE_string("calibration_audio", None, "Audio folder for int8 calibration "
                        "(default: the training split).", flag_values=fv)
    flags.DEFINE_integer("num_calibration", None, "Calibration segments (default 32; 4 "
                         "for a QAT model, whose trained ranges replace the calibrated "
                         "ones).", flag_values=fv)
    flags.DEFINE_integer("calibration_frames", None, "Frames per calibration segment in "
                         "dynamic mode (default 256; 64 for a QAT model).", flag_values=fv)
    flags.DEFINE_integer("num_validation", 4, "Held-out clips compared against Keras.",
                         flag_values=fv)
    flags.DEFINE_integer("validation_frames", 512, "At most this many frames of each "
                         "held-out clip.", flag_values=fv)
    flags.DEFINE_boolean("mirror_pad", False, "Keep reflection pads as MIRROR_PAD ops "
                         "(default: slices + concat, same numbers, which XNNPACK runs).",
                         flag_values=fv)
    flags.DEFINE_float("min_snr_db", None, "Refuse below this SNR vs Keras (default per "
                       "mode: float32 50, fp16 30, int8 0; int8 of a QAT model dir 12, vs its "
                       "fake-quant generator).", flag_values=fv)
    flags.DEFINE_integer("num_threads", 2, "LiteRT threads for the checks.", flag_values=fv)
    flags.DEFINE_boolean("overwrite", False, "Replace an existing OUT.tflite (and its "
                         ".json, .golden.npz).", flag_values=fv)
    flags.DEFINE_boolean("debug", False, DEBUG_HELP, flag_values=fv)
    return fv


def main(argv) -> int:
    """Runs the CLI on argv (argv[0] is the program); returns the exit status. A refusal
    is one line on stderr, and nothing is written."""
    fv = _define_flags()
    status = parse_flags(fv, argv, __doc__, required=("model_dir", "output"))
    if status is not None:
        return status
    if fv.quantize + fv.fp16 + fv.dynamic_range > 1:
        print("error: --quantize, --fp16 and --dynamic_range exclude each other",
              file=sys.stderr)
        return 2
    if fv.frames is not None and fv.frames < MIN_FRAMES:  # before any model is loaded
        print(f"{REFUSED}--frames {fv.frames}: a model needs at least {MIN_FRAMES} frames",
              file=sys.stderr)
        return 2
    model_dir = resolve(fv.model_dir)
    if not os.path.exists(model_dir):
        print(f"{REFUSED}{no_such_model(fv.model_dir)}", file=sys.stderr)
        return 1
    mode = ("int8" if fv.quantize else "fp16" if fv.fp16
            else "dynamic_range" if fv.dynamic_range else "float32")
    debug = debug_requested(fv.debug)
    quiet_tensorflow(debug)
    # loads TensorFlow: after quiet_tensorflow(), and never for --help
    from tf_melgan.deploy.convert import ConversionError, convert

    with ctrl_c_recorded() as interrupted:
        try:
            convert(model_dir, fv.output, mode, frames=fv.frames,
                    saved_model=fv.saved_model, data=fv.data,
                    calibration_audio=fv.calibration_audio,
                    num_calibration=fv.num_calibration,
                    calibration_frames=fv.calibration_frames,
                    num_validation=fv.num_validation, validation_frames=fv.validation_frames,
                    which=fv.which, int8_io=fv.int8_io, mirror_pad=fv.mirror_pad,
                    min_snr_db=fv.min_snr_db, num_threads=fv.num_threads,
                    float_layers=[x for x in fv.float_layers.split(",") if x],
                    ranges=fv.ranges, overwrite=fv.overwrite)
        except KeyboardInterrupt:  # the output is written last, from a staging dir
            interrupted.append(signal.SIGINT)
        except (ConversionError, ModelCheckError, ValueError, OSError) as e:
            if not interrupted:
                return report(e, debug, REFUSED)
        except Exception:
            if not interrupted:
                raise
    if interrupted:  # also when the converter turned the interrupt into its own error
        print(f"{REFUSED}interrupted (Ctrl-C)", file=sys.stderr)
        return 130
    return 0


def cli():
    sys.exit(main(sys.argv))


if __name__ == "__main__":
    cli()
