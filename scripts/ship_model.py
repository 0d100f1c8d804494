#!/usr/bin/env python
"""Puts a trained generator into the package as a shipped vocoder (tf_melgan/pretrained/NAME):

    python scripts/ship_model.py --model_dir runs/ljspeech_cpu --name ljspeech [--which best]

Writes config.yaml, best_generator.weights.h5 (the weight-normed generator, as training
saves it; its float32 arrays stored as float16 unless --float32: half the size, and Keras
loads them into float32 variables), best.json (its step and validation log-mel L1) and
card.json: the data, steps, training hours (--init_step / --init_hours: those of the
generator an --init_from run started from, added) and the held-out figures of
benchmarks.curve (PESQ-wb, STOI, voicing, F0 error, log-mel L1, frame comb) on the model's
held-out clips, with Griffin-Lim's beside (a quantization-aware model: through its
simulated int8, as it deploys).
A quantization-aware model dir (training.qat) ships its qat_ranges.json too, so that
`tf_melgan.convert --model_dir NAME --quantize` converts it with its trained int8 ranges.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def store_float16(path: str) -> None:
    """Rewrites a Keras .weights.h5 with its float32 arrays as float16, atomically (a fresh
    file: h5py does not reclaim the space of deleted datasets)."""
    import h5py
    import numpy as np

    from tf_melgan.atomic import replacing

    with replacing(path) as tmp, h5py.File(path, "r") as src, h5py.File(tmp, "w") as dst:
        dst.attrs.update(src.attrs)

        def copy(name, obj):
            if isinstance(obj, h5py.Group):
                dst.require_group(name).attrs.update(obj.attrs)
            else:
                data = obj[()]
                dst.create_dataset(name, data=data.astype(np.float16)
                                   if data.dtype == np.float32 else data)
                dst[name].attrs.update(obj.attrs)  # e.g. Keras's bfloat16 marker
        src.visititems(copy)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model_dir", required=True)
    p.add_argument("--name", default="ljspeech")
    p.add_argument("--which", default="best", choices=["best", "latest"])
    p.add_argument("--clips", type=int, default=16)
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--float32", action="store_true",
                   help="store the weights as float32 (default: float16)")
    p.add_argument("--dnsmos", action="store_true", help="DNSMOS too (the [eval] extra), for "
                   "the vocoder, Griffin-Lim and the recordings")
    p.add_argument("--note", default="", help="what the model is not, for the card")
    p.add_argument("--init_step", type=int, default=0, help="a run started with --init_from "
                   "another's generator: that generator's step, added to this run's")
    p.add_argument("--init_hours", type=float, default=0.0,
                   help="and its training hours, added to this run's")
    args = p.parse_args(argv)

    import numpy as np
    import tensorflow as tf

    from benchmarks.curve import evaluate, held_out_clips, recordings_mos, training_hours
    from benchmarks._speech import griffin_lim
    from tf_melgan.checkpoint import generator_source, load_generator
    from tf_melgan.pretrained import HERE
    from tf_melgan.qat import RANGES_FILE, load_quantized

    generator, config = load_generator(args.model_dir, which=args.which, fold=False)
    source = generator_source(args.model_dir, args.which)
    if not args.float32:  # scored as it ships: the float16-rounded weights
        for v in generator.weights:
            if v.dtype == "float32":  # what store_float16 rounds
                v.assign(v.numpy().astype(np.float16).astype(np.float32))
    best = {"step": args.init_step + source.step, "val_mel_l1": source.val_mel_l1}
    clips = held_out_clips(config, args.model_dir, args.clips, args.seconds)
    folded = generator.folded()
    # A QAT model is scored as it deploys: through the int8 arithmetic it was trained with.
    quantized, _ = load_quantized(args.model_dir, args.which)
    scored = folded if quantized is None else quantized
    scores = evaluate(lambda m: scored(tf.constant(m), training=False), clips, config.audio,
                      mos=args.dnsmos)
    reference = evaluate(lambda m: griffin_lim(m[0], config.audio)[None], clips, config.audio,
                         mos=args.dnsmos)
    recordings = recordings_mos(clips, config.audio.sample_rate) if args.dnsmos else None
    out = os.path.join(HERE, args.name)
    os.makedirs(out, exist_ok=True)
    shutil.copy(os.path.join(args.model_dir, "config.yaml"), os.path.join(out, "config.yaml"))
    weights = os.path.join(out, "best_generator.weights.h5")
    generator.save_weights(weights)
    if not args.float32:
        store_float16(weights)
    qat_ranges = os.path.join(args.model_dir, RANGES_FILE)
    if os.path.isfile(qat_ranges):  # a QAT model: the int8 ranges it was trained with
        shutil.copy(qat_ranges, os.path.join(out, RANGES_FILE))
    elif os.path.exists(os.path.join(out, RANGES_FILE)):  # a float model replaces a QAT one
        os.remove(os.path.join(out, RANGES_FILE))
    if best["val_mel_l1"] is None:  # the latest checkpoint: score it on the held-out clips
        best["val_mel_l1"] = scores["log_mel_l1"]
    with open(os.path.join(out, "best.json"), "w") as f:
        json.dump(best, f)
    card = {"name": args.name, "step": best["step"],
            "train_hours": round(args.init_hours + training_hours(args.model_dir, source.step),
                                 2),
            "cpu": "2 cores (see docs/BENCHMARKS.md)", "data": config.data.path,
            "held_out": {"clips": len(clips), "seconds_each": args.seconds,
                         "scored": "Keras float" if quantized is None else
                         "Keras, int8 simulated (tf_melgan.qat, its QAT ranges)",
                         "vocoder": scores, "griffin_lim_32": reference,
                         **({"recordings": recordings} if recordings else {})},
            "parameters": int(folded.count_params()), "note": args.note,
            "qat": os.path.isfile(qat_ranges)}
    with open(os.path.join(out, "card.json"), "w") as f:
        json.dump(card, f, indent=1)
    print(json.dumps(card, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
