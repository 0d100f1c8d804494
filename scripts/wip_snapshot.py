#!/usr/bin/env python
"""Commits-ready copy of a training run's best generator into wip/ (wip/README.md):

    python scripts/wip_snapshot.py --model_dir runs/fourier --name fourier [--curve F.csv]
                                   [--which latest]

Writes wip/NAME/config.yaml, best_generator.weights.h5 (float16, as shipped vocoders
store it), best.json and, with --curve, curve.csv: a model dir that `--init_from` takes.
`--which latest` stores the latest checkpoint's generator instead of the best by
validation log-mel L1 (a GAN phase improves what that L1 does not measure).
Replaces the previous copy in place. Restart a lost run from it:

    python -m tf_melgan.train --config wip/NAME/config.yaml --model_dir runs/NAME \\
        --init_from wip/NAME
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from scripts.ship_model import store_float16  # noqa: E402

FILES = ("config.yaml", "best_generator.weights.h5", "best.json")


def _latest_generator(model_dir, staging):
    """The latest checkpoint's generator (weight norm kept) and its step, as a best pair."""
    import json

    from tf_melgan.checkpoint import generator_source, load_generator
    generator, _ = load_generator(model_dir, which="latest", fold=False)
    generator.save_weights(os.path.join(staging, "best_generator.weights.h5"))
    step = generator_source(model_dir, "latest").step
    with open(os.path.join(staging, "best.json"), "w") as f:
        json.dump({"step": step, "val_mel_l1": None, "which": "latest"}, f)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model_dir", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--curve", default=None, help="the run's curve CSV, copied as curve.csv")
    p.add_argument("--which", default="best", choices=["best", "latest"])
    args = p.parse_args(argv)
    files = FILES if args.which == "best" else FILES[:1]
    missing = [f for f in files if not os.path.isfile(os.path.join(args.model_dir, f))]
    if missing:
        print(f"error: {args.model_dir} has no {', '.join(missing)} yet", file=sys.stderr)
        return 1
    out = os.path.join(ROOT, "wip", args.name)
    staging = out + ".tmp"
    shutil.rmtree(staging, ignore_errors=True)
    os.makedirs(staging)
    for name in files:
        shutil.copyfile(os.path.join(args.model_dir, name), os.path.join(staging, name))
    if args.which == "latest":
        _latest_generator(args.model_dir, staging)
    store_float16(os.path.join(staging, "best_generator.weights.h5"))
    if args.curve:
        shutil.copyfile(args.curve, os.path.join(staging, "curve.csv"))
    shutil.rmtree(out, ignore_errors=True)
    os.replace(staging, out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
