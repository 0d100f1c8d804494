#!/usr/bin/env python
"""Speed, size and quality of a generator's .tflite conversions under LiteRT (XNNPACK):

    python -m benchmarks.tflite_speed --model_dir runs/demo [--out_dir /tmp/tflite_bench]

Converts the generator (tflite/convert.py) as float32, fp16, int8 and dynamic-range with a
dynamic frame count (and int8 with --float_layers sets in float32), float32, fp16 and int8
with a fixed one too (--frames, default 861 = 10 s at 22050 Hz / hop 256), and float32
with MIRROR_PAD reflection pads; then times one 10 s utterance (held-out clips' log-mels,
tiled) per model: warm-up, then the median of --repeats invokes with --threads threads (the
models take turns, one invoke each per round, so load changes on a shared machine hit all
alike). Reports x real time (audio seconds / wall seconds), size, and the SNR of each
model's output against the Keras float32 output of the same mel (for a QAT int8, whose
weights differ, that SNR is low by design). int8 is
what `--quantize` gives: on a model dir with a quantization-aware MODEL_DIR/int8 (the shipped
`ljspeech`) that generator with its QAT ranges. The timing (benchmarks/_common.py
time_litert) is shared with benchmarks/quality.py --speed. Not a test: numbers depend on the
machine and its load (printed).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from benchmarks._common import held_out_mel, time_litert  # noqa: E402
from tf_melgan.deploy.litert import snr_db  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model_dir", default="/tmp/demo3")
    p.add_argument("--out_dir", default="/tmp/tflite_bench")
    p.add_argument("--frames", type=int, default=861, help="utterance length (861 = 10 s)")
    p.add_argument("--modes", default="float32,fp16,int8,dynamic_range")
    p.add_argument("--static_modes", default="float32,fp16,int8",
                   help="modes also converted with a fixed --frames")
    p.add_argument("--mirror_pad_modes", default="float32",
                   help="modes also converted with --mirror_pad (dynamic and fixed), to "
                        "show what sliced reflection pads gain")
    p.add_argument("--float_layers", default="",
                   help="int8 (dynamic) models with these layers in float32 too, "
                        "';'-separated sets of convert.py --float_layers lists, e.g. "
                        "'output;up_3,res_3_,output'")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--num_calibration", type=int, default=32)
    p.add_argument("--reuse", action="store_true", help="reuse models already in out_dir")
    args = p.parse_args(argv)
    if args.repeats < 5:
        p.error("--repeats must be >= 5")

    import tensorflow as tf

    from tf_melgan.deploy.convert import convert
    from tf_melgan.checkpoint import load_generator

    os.makedirs(args.out_dir, exist_ok=True)
    generator, config = load_generator(args.model_dir)
    a = config.audio
    mel = held_out_mel(config, args.model_dir, args.frames)
    seconds = args.frames * a.hop_length / a.sample_rate
    keras_audio = np.asarray(generator(tf.constant(mel), training=False))

    def split(text):
        return [m for m in text.split(",") if m]

    jobs = [(m, None, False, ()) for m in split(args.modes)]
    jobs += [(m, args.frames, False, ()) for m in split(args.static_modes)]
    jobs += [(m, f, True, ()) for m in split(args.mirror_pad_modes) for f in (None, args.frames)]
    jobs += [("int8", None, False, tuple(split(layers)))
             for layers in args.float_layers.split(";") if layers]
    models = {}
    for mode, frames, mirror, float_layers in jobs:
        shape = f"static{frames}" if frames else "dynamic"
        floats = f"float_{'+'.join(float_layers)}_" if float_layers else ""
        name = f"{mode}_{floats}{'mirrorpad_' if mirror else ''}{shape}"
        path = os.path.join(args.out_dir, name + ".tflite")
        sm = os.path.join(args.out_dir, f"saved_model_{'mirrorpad_' if mirror else ''}{shape}")
        if not (args.reuse and os.path.isfile(path)):
            convert(args.model_dir, path, mode, frames=frames, saved_model=sm,
                         mirror_pad=mirror, num_calibration=args.num_calibration,
                         float_layers=float_layers, overwrite=True)
        models[name] = (mode, frames, path)

    load = os.getloadavg()
    print(f"\n{args.model_dir}: {args.frames} frames = {seconds:.2f} s of audio, LiteRT "
          f"XNNPACK {args.threads} threads, median of {args.repeats} after warm-up, models "
          f"in turn; load average {load[0]:.2f} on {os.cpu_count()} CPUs")
    speed, interpreters = time_litert({name: path for name, (_, _, path) in models.items()},
                                      mel, seconds, args.threads, args.repeats)
    results = []
    for name, (mode, frames, path) in models.items():
        interp, out_index = interpreters[name]
        results.append({
            "model": name, "mode": mode, "frames": frames or "dynamic",
            "size_mb": os.path.getsize(path) / 1e6, **speed[name],
            "snr_vs_keras_db": snr_db(keras_audio, interp.get_tensor(out_index))})
        r = results[-1]
        print(f"  {name:32s} {r['size_mb']:6.2f} MB  {r['median_s'] * 1000:8.1f} ms (min "
              f"{r['min_s'] * 1000:7.1f})  x{r['x_real_time']:6.1f} real time  SNR vs Keras "
              f"{r['snr_vs_keras_db']:6.1f} dB", flush=True)
    load = os.getloadavg()
    print(f"load average after: {load[0]:.2f}")
    with open(os.path.join(args.out_dir, "results.json"), "w") as f:
        json.dump({"model_dir": args.model_dir, "frames": args.frames, "seconds": seconds,
                   "threads": args.threads, "repeats": args.repeats, "loadavg": load,
                   "results": results}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
