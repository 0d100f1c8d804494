#!/usr/bin/env python
"""Inference speed of the paper-size generator (ngf 32, 80 mels, ratios 8/8/2/2, random
weights shared with PyTorch) in every form the project ships, against PyTorch:

    python -m benchmarks.inference [--threads 1,2] [--seconds 10,60] [--out FILE.json]

Variants: Keras eager call, tf.function, tf.function(jit_compile=True) (XLA), SavedModel
(tf.saved_model.load of tf_melgan.deploy.saved_model.export_saved_model), LiteRT (XNNPACK) fp32 / fp16 /
int8 (tflite/convert.py: --fp16, --quantize calibrated on real ljspeech-mini log-mels) with a
dynamic frame count and static (--frames = the utterance), the streamer (tf_melgan.streaming
.stream over a static-chunk fp32 or int8 .tflite: whole utterance and first-chunk latency) and
PyTorch (tests/torch_melgan.py, weight norm removed, torch.inference_mode).

Each thread count runs in its own child process (TF's thread pools are fixed when TF
starts): TF intra-op = N, inter-op = 1; torch.set_num_threads(N); LiteRT num_threads=N.
Within a child, variants take turns (one call each per round), warm-up then the median of
--repeats rounds. LiteRT times cover invoke() only (input set once), as in tflite_speed.py.
Peak RSS: the whole child's high-water mark, and per variant the growth of that mark during
its set-up and first call (variants set up in table order, so later ones show only what
they add beyond the earlier peak).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from benchmarks._common import (HOP, N_MELS, SAMPLE_RATE, add_run_arguments, loadavg,
                                machine, parse_run_arguments, peak_rss_mb, prepare_model_dir,
                                real_mel, rss_mb, run_child, timed_rounds, versions)

ALL = ["keras_eager", "tf_function", "tf_function_xla", "saved_model",
       "tflite_fp32_dynamic", "tflite_fp16_dynamic", "tflite_int8_dynamic",
       "tflite_fp32_static", "tflite_fp16_static", "tflite_int8_static",
       "stream_tflite_fp32", "stream_tflite_int8", "pytorch"]
STREAM_CHUNK, STREAM_CONTEXT = 32, 6  # chunk frames; receptive field 6 frames each side


def stream_mode(variant):
    return {"fp32": "float32", "int8": "int8"}[variant.rsplit("_", 1)[1]]


def frames_for(seconds):
    return {10: 861, 60: 5168}.get(seconds, round(seconds * SAMPLE_RATE / HOP))


def tflite_path(work, mode, frames):
    return os.path.join(work, "tflite", f"{mode}_{frames or 'dynamic'}.tflite")


def prepare(args, durations):
    """Model dir, SavedModel and every .tflite the children need (reused if present)."""
    from benchmarks._common import ROOT  # noqa: F401
    model_dir = prepare_model_dir(args.work_dir)
    sm = os.path.join(args.work_dir, "saved_model")
    if not os.path.isfile(os.path.join(sm, "saved_model.pb")):
        from tf_melgan.deploy.saved_model import export_saved_model
        export_saved_model(model_dir, sm)
    from tf_melgan.deploy import convert as conv
    jobs = []
    for v in set(args.variants):
        if v.startswith("tflite_"):
            _, mode, shape = v.split("_")
            mode = "float32" if mode == "fp32" else mode
            if shape == "dynamic":
                jobs.append((mode, None))
            else:
                jobs += [(mode, frames_for(s)) for s in durations]
        if v.startswith("stream_tflite_"):
            jobs.append((stream_mode(v), STREAM_CHUNK + 2 * STREAM_CONTEXT))
    for mode, frames in sorted(set(jobs), key=str):
        path = tflite_path(args.work_dir, mode, frames)
        if not os.path.isfile(path):
            t = time.time()
            # int8 calibration runs the float model per segment: for a 60 s static model
            # 32 segments of 5168 frames take minutes, so long static models get 8.
            calib = args.num_calibration if (frames or 0) <= 1000 else \
                min(args.num_calibration, 8)
            conv.convert(model_dir, path, mode, frames=frames,
                         num_calibration=calib, num_validation=2,
                         validation_frames=256)
            print(f"converted {path} in {time.time() - t:.0f} s", flush=True)
    return model_dir, sm


def child(args):
    n = args.threads
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(n)  # numpy's BLAS (the sgemm bound); before numpy loads
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(n)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    import numpy as np
    import torch
    torch.set_num_threads(n)
    torch.set_num_interop_threads(1)

    from benchmarks._common import litert_interpreter, load_torch_generator
    from tf_melgan.checkpoint import load_generator

    model_dir = os.path.join(args.work_dir, "model")
    results = {"threads": n, "load_start": loadavg(), "utterances": []}
    log = lambda m: print(m, flush=True)  # noqa: E731
    from benchmarks.bound import float_gemms
    results["gemm"] = float_gemms(n, n=2048, repeats=5)  # same-run fp32 bound (GFLOP/s)
    log(f"  [{n} thr] sgemm 2048^3 GFLOP/s: {results['gemm']}")
    generator, _ = load_generator(model_dir)
    base_rss = rss_mb()
    for seconds in args.seconds:
        frames = frames_for(seconds)
        audio_s = frames * HOP / SAMPLE_RATE
        mel = real_mel(frames)
        mel_tf = tf.constant(mel)
        variants = [v for v in args.variants
                    if not (seconds > 10 and v in args.skip_long)]
        fns, mem, outputs = {}, {}, {}
        for v in variants:
            rss0, peak0 = rss_mb(), peak_rss_mb()
            t0 = time.perf_counter()
            if v == "keras_eager":
                fn = lambda: generator(mel_tf, training=False).numpy()  # noqa: E731
            elif v in ("tf_function", "tf_function_xla"):
                f = tf.function(lambda x: generator(x, training=False),
                                jit_compile=(v == "tf_function_xla"))
                fn = (lambda f=f: f(mel_tf).numpy())
            elif v == "saved_model":
                sig = tf.saved_model.load(os.path.join(args.work_dir, "saved_model")) \
                    .signatures["serving_default"]
                fn = (lambda sig=sig: sig(mel=mel_tf)["audio"].numpy())
            elif v.startswith("tflite_"):
                _, mode, shape = v.split("_")
                mode = "float32" if mode == "fp32" else mode
                path = tflite_path(args.work_dir, mode, None if shape == "dynamic" else frames)
                interp, out_index = litert_interpreter(path, mel, n)
                fn = interp.invoke
                outputs[v] = (lambda i=interp, o=out_index: i.get_tensor(o))
            elif v.startswith("stream_tflite_"):
                from tf_melgan.streaming import stream_all
                from tf_melgan.deploy.vocoder import load_vocoder
                voc = load_vocoder(tflite_path(args.work_dir, stream_mode(v),
                                               STREAM_CHUNK + 2 * STREAM_CONTEXT), num_threads=n)
                fn = (lambda voc=voc: stream_all(voc, mel[0], STREAM_CHUNK, STREAM_CONTEXT))
            elif v == "pytorch":
                tg = load_torch_generator(args.work_dir)
                x = torch.from_numpy(mel).transpose(1, 2).contiguous()

                def fn(tg=tg, x=x):
                    with torch.inference_mode():
                        return tg(x)[:, 0].numpy()
            else:
                raise ValueError(v)
            out = fn()  # first call: tracing / XLA compile / allocation
            first = time.perf_counter() - t0
            if v in outputs:
                out = outputs[v]()
            outputs[v] = np.asarray(out).reshape(-1)
            fns[v] = fn
            mem[v] = {"first_call_s": first, "rss_growth_mb": rss_mb() - rss0,
                      "peak_rss_growth_mb": peak_rss_mb() - peak0}
            log(f"  [{n} thr, {seconds} s] set up {v}: first call {first:.2f} s, "
                f"RSS +{mem[v]['rss_growth_mb']:.0f} MB")
        load0 = loadavg()
        times = timed_rounds(fns, args.repeats, args.warmup, log)
        load1 = loadavg()
        ref = outputs.get("keras_eager", outputs.get("saved_model"))
        rows = []
        torch_median = float(np.median(times["pytorch"])) if "pytorch" in times else None
        for v in variants:
            med = float(np.median(times[v]))
            err = None
            if ref is not None and outputs[v].shape == ref.shape:
                err = float(np.max(np.abs(outputs[v] - ref)))
            rows.append({"variant": v, "median_s": med, "min_s": float(np.min(times[v])),
                         "times_s": times[v], "rtf": med / audio_s,
                         "x_real_time": audio_s / med,
                         "speedup_vs_pytorch": (torch_median / med) if torch_median else None,
                         "max_abs_diff_vs_keras": err, **mem[v]})
        entry = {"seconds": seconds, "frames": frames, "audio_s": audio_s, "rows": rows,
                 "load_before": load0, "load_after": load1}
        for v in [v for v in variants if v.startswith("stream_tflite_")]:
            from tf_melgan.streaming import first_chunk_latency
            from tf_melgan.deploy.vocoder import load_vocoder
            voc = load_vocoder(tflite_path(args.work_dir, stream_mode(v),
                                           STREAM_CHUNK + 2 * STREAM_CONTEXT), num_threads=n)
            entry.setdefault("stream_first_chunk", {})[v] = first_chunk_latency(
                voc, N_MELS, STREAM_CHUNK, (STREAM_CONTEXT, STREAM_CONTEXT), hop_length=HOP,
                sample_rate=SAMPLE_RATE, fixed_frames=STREAM_CHUNK + 2 * STREAM_CONTEXT,
                repeats=max(args.repeats, 5))
        results["utterances"].append(entry)
        print_table(n, entry)
    results["gemm_end"] = float_gemms(n, n=2048, repeats=5)
    log(f"  [{n} thr] sgemm at the end: {results['gemm_end']}")
    results["peak_rss_mb"] = peak_rss_mb()
    results["rss_after_model_load_mb"] = base_rss
    results["load_end"] = loadavg()
    with open(args.child_out, "w") as f:
        json.dump(results, f, indent=2)


def print_table(n, e):
    print(f"\n{e['seconds']} s utterance ({e['frames']} frames), {n} thread(s), median of "
          f"rounds; load {e['load_before'][0]} -> {e['load_after'][0]}")
    print(f"  {'variant':22s} {'median':>9s} {'RTF':>7s} {'x RT':>7s} {'vs torch':>8s} "
          f"{'maxdiff':>8s} {'first':>7s} {'+peakRSS':>8s}")
    for r in e["rows"]:
        vs = f"{r['speedup_vs_pytorch']:.2f}x" if r["speedup_vs_pytorch"] else "-"
        d = f"{r['max_abs_diff_vs_keras']:.1e}" if r["max_abs_diff_vs_keras"] is not None \
            else "-"
        print(f"  {r['variant']:22s} {r['median_s'] * 1000:7.0f}ms {r['rtf']:7.3f} "
              f"{r['x_real_time']:7.2f} {vs:>8s} {d:>8s} {r['first_call_s']:6.1f}s "
              f"{r['peak_rss_growth_mb']:7.0f}M")
    for v, s in e.get("stream_first_chunk", {}).items():
        print(f"  {v} first chunk ({STREAM_CHUNK}-frame chunk, window "
              f"{STREAM_CHUNK + 2 * STREAM_CONTEXT}): compute {s['compute'] * 1000:.1f} ms, "
              f"lookahead {s['lookahead'] * 1000:.0f} ms, latency {s['latency'] * 1000:.0f} "
              f"ms, chunk RTF {s['real_time_factor']:.3f}")
    sys.stdout.flush()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", default="1,2", help="comma list (parent) or one N (child)")
    p.add_argument("--seconds", default="10,60", help="utterance lengths (10 = 861 frames, "
                                                      "60 = 5168)")
    p.add_argument("--variants", default=",".join(ALL))
    p.add_argument("--skip_long", default="keras_eager,tf_function_xla,tflite_fp16_dynamic,"
                   "tflite_fp16_static,stream_tflite_fp32,stream_tflite_int8",
                   help="variants left out for utterances > 10 s (time budget)")
    p.add_argument("--num_calibration", type=int, default=32)
    add_run_arguments(p, "inference.json")
    args = parse_run_arguments(p, argv)
    args.skip_long = [v for v in args.skip_long.split(",") if v]
    args.seconds = [int(s) for s in args.seconds.split(",") if s]
    if args.child_out:
        args.threads = int(args.threads)
        child(args)
        return 0
    load_start = loadavg()
    prepare(args, args.seconds)
    forward = ["--seconds", ",".join(map(str, args.seconds)),
               "--variants", ",".join(args.variants), "--skip_long", ",".join(args.skip_long),
               "--repeats", str(args.repeats), "--warmup", str(args.warmup),
               "--work_dir", args.work_dir]
    runs = [run_child("benchmarks.inference", forward, int(t))
            for t in args.threads.split(",")]
    for run in runs:
        for e in run["utterances"]:
            print_table(run["threads"], e)
        print(f"  child peak RSS {run['peak_rss_mb']:.0f} MB; load {run['load_start']} -> "
              f"{run['load_end']}")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"machine": machine(), "versions": versions(), "load_start": load_start,
                   "load_end": loadavg(), "args": {k: v for k, v in vars(args).items()},
                   "runs": runs}, f, indent=2)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
