#!/usr/bin/env python
"""Inference time and memory against utterance length (paper-size generator):

    python -m benchmarks.length_scaling [--seconds 1,10,60,300] [--threads 2]
                                        [--variants saved_model,tflite_int8,stream_int8]

Variants: the SavedModel (tf_melgan.export, whole utterance), the `--quantize` .tflite with
a dynamic frame count (whole utterance), and the streamer (tf_melgan.streaming.stream) over
a fixed-chunk int8 .tflite (--chunk frames + 6 frames of context each side), whose blocks are
consumed as they come (never concatenated), as a live consumer would.

Every (variant, length) runs in its own child process; its peak RSS is reset (Linux
/proc/self/clear_refs) after the mel is made and the model loaded, so "peak RSS" is the
high-water mark of synthesis itself and "growth" what synthesis adds to the loaded process:
for the streamer it should not grow with the length, for whole-utterance runs it grows with
the activations (32 channels x samples at the last stage). Time: median of --repeats after
a warm-up call; "ms per audio second" should be flat if time is linear.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from benchmarks._common import (HOP, SAMPLE_RATE, add_run_arguments, hwm_mb, loadavg,
                                machine, parse_run_arguments, prepare_model_dir, real_mel,
                                reset_peak_rss, rss_mb, run_child, versions)

ALL = ["saved_model", "tflite_int8", "stream_int8"]
CONTEXT = 6


def paths(work, chunk):
    return {"saved_model": os.path.join(work, "saved_model"),
            "tflite_int8": os.path.join(work, "tflite", "int8_dynamic.tflite"),
            "stream_int8": os.path.join(work, "tflite", f"int8_{chunk + 2 * CONTEXT}.tflite")}


def prepare(args):
    model_dir = prepare_model_dir(args.work_dir)
    p = paths(args.work_dir, args.chunk)
    if not os.path.isfile(os.path.join(p["saved_model"], "saved_model.pb")):
        from tf_melgan.deploy.saved_model import export_saved_model
        export_saved_model(model_dir, p["saved_model"])
    from tf_melgan.deploy import convert as conv
    for key, frames in (("tflite_int8", None), ("stream_int8", args.chunk + 2 * CONTEXT)):
        if not os.path.isfile(p[key]):
            conv.convert(model_dir, p[key], "int8", frames=frames, num_validation=2,
                         validation_frames=256)


def child(args):
    n, variant, seconds = args.threads, args.variants[0], args.seconds[0]
    import numpy as np
    frames = round(seconds * SAMPLE_RATE / HOP)
    mel = real_mel(frames)
    p = paths(args.work_dir, args.chunk)
    rss_start = rss_mb()
    if variant == "saved_model":
        import tensorflow as tf
        tf.config.threading.set_intra_op_parallelism_threads(n)
        tf.config.threading.set_inter_op_parallelism_threads(1)
        sig = tf.saved_model.load(p["saved_model"]).signatures["serving_default"]
        mel_tf = tf.constant(mel)
        fn = lambda: sig(mel=mel_tf)["audio"].shape[-1]  # noqa: E731
    else:
        from tf_melgan.deploy.vocoder import load_vocoder
        voc = load_vocoder(p[variant], num_threads=n)
        if variant == "tflite_int8":
            fn = lambda: voc(mel).shape[-1]  # noqa: E731
        else:
            from tf_melgan.streaming import stream

            def fn():
                return sum(len(block) for block in
                           stream(voc, mel[0], args.chunk, (CONTEXT, CONTEXT)))
    rss_loaded = rss_mb()
    reset_peak_rss()  # the peak of synthesis alone, not of preparing the mel
    samples = fn()  # warm-up
    if samples != frames * HOP:
        raise RuntimeError(f"{variant}: {samples} samples for {frames} frames")
    times = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    audio_s = frames * HOP / SAMPLE_RATE
    med = float(np.median(times))
    out = {"variant": variant, "seconds": seconds, "frames": frames, "threads": n,
           "median_s": med, "times_s": times, "x_real_time": audio_s / med,
           "ms_per_audio_second": 1000 * med / audio_s, "rss_start_mb": rss_start,
           "rss_loaded_mb": rss_loaded, "peak_rss_mb": hwm_mb(),
           "peak_growth_mb": hwm_mb() - rss_loaded, "load": loadavg()}
    with open(args.child_out, "w") as f:
        json.dump(out, f)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", default="2")
    p.add_argument("--seconds", default="1,10,60,300")
    p.add_argument("--variants", default=",".join(ALL))
    p.add_argument("--chunk", type=int, default=64, help="streaming chunk frames")
    add_run_arguments(p, "length_scaling.json")
    args = parse_run_arguments(p, argv)
    args.seconds = [float(s) for s in args.seconds.split(",") if s]
    if args.child_out:
        args.threads = int(args.threads)
        child(args)
        return 0
    prepare(args)
    rows = []
    for v in args.variants:
        for s in args.seconds:
            forward = ["--variants", v, "--seconds", str(s), "--chunk", str(args.chunk),
                       "--repeats", str(args.repeats), "--work_dir", args.work_dir]
            rows.append(run_child("benchmarks.length_scaling", forward, int(args.threads)))
            r = rows[-1]
            print(f"  {v:12s} {s:6.0f} s: median {r['median_s']:.3f} s, "
                  f"{r['x_real_time']:.1f}x real time, {r['ms_per_audio_second']:.1f} ms per "
                  f"audio s, peak RSS {r['peak_rss_mb']:.0f} MB", flush=True)
    print("\n| variant | length | median | x real time | ms per audio s | peak RSS | growth |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['variant']} | {r['seconds']:.0f} s | {r['median_s']:.3f} s | "
              f"{r['x_real_time']:.1f} | {r['ms_per_audio_second']:.1f} | "
              f"{r['peak_rss_mb']:.0f} MB | {r['peak_growth_mb']:.0f} MB |")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"machine": machine(), "versions": versions(), "chunk": args.chunk,
                   "threads": args.threads, "rows": rows}, f, indent=2)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
