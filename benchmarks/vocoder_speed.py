#!/usr/bin/env python
"""x real time of several vocoders' .tflite files, in one run, on the same utterance:

    python -m benchmarks.vocoder_speed --model fourier=runs/f.tflite --model melgan=m.tflite
                                       [--frames 861] [--threads 2] [--repeats 15]
                                       [--mel_from ljspeech] [--out F.json]

The utterance: --frames of log-mel (861 = 10 s at 22050 Hz / hop 256) from the held-out
clips of --mel_from's data split (a model dir or a shipped vocoder's name; tiled), as
benchmarks/tflite_speed.py uses. The models take turns, one invoke each per round, after 2
warm-up rounds, and report the median of --repeats (benchmarks/_common.py time_litert), so
a change in a shared machine's load hits them all alike; the ratios between them are the
figures to quote. Each model must take that mel's band count and give frames * hop samples.
Not a test: numbers depend on the machine and its load (printed).
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

from benchmarks._common import held_out_mel, loadavg, time_litert  # noqa: E402

WARMUP = 2


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", action="append", required=True, metavar="NAME=PATH",
                   help="a .tflite to time, named in the table (repeat the flag)")
    p.add_argument("--frames", type=int, default=861)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--mel_from", default="ljspeech")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    paths = dict(m.split("=", 1) for m in args.model)
    missing = [path for path in paths.values() if not os.path.isfile(path)]
    if missing:
        p.error(f"no such file: {', '.join(missing)}")

    from tf_melgan.checkpoint import load_model_config
    from tf_melgan.pretrained import resolve
    model_dir = resolve(args.mel_from)
    config = load_model_config(model_dir)
    mel = held_out_mel(config, model_dir, args.frames)
    seconds = args.frames * config.audio.hop_length / config.audio.sample_rate
    before = loadavg()
    figures, _ = time_litert(paths, mel, seconds, args.threads, args.repeats, WARMUP)
    print(f"{args.frames} frames = {seconds:.2f} s of held-out log-mel, {args.threads} "
          f"threads, median of {args.repeats} invokes after {WARMUP} warm-up rounds, models "
          f"in turn; load average {before[0]} -> {loadavg()[0]} on {os.cpu_count()} CPUs")
    first = next(iter(figures))
    print(f"| model | size | median | x real time | vs {first} |\n|---|---|---|---|---|")
    for name, f in figures.items():
        size = os.path.getsize(paths[name]) / 1e6
        print(f"| {name} | {size:.1f} MB | {1000 * f['median_s']:.0f} ms | "
              f"{f['x_real_time']:.1f} | {figures[first]['median_s'] / f['median_s']:.2f}x |")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"frames": args.frames, "seconds": seconds, "threads": args.threads,
                       "repeats": args.repeats, "models": figures, "paths": paths}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
