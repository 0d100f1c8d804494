#!/usr/bin/env python
"""Commits-ready copy of a training run's best generator into wip/ (wip/README.md):

    python scripts/wip_snapshot.py --model_dir runs/fourier --name fourier [--curve F.csv]

Writes wip/NAME/config.yaml, best_generator.weights.h5 (float16, as shipped vocoders
store it), best.json and, with --curve, curve.csv: a model dir that `--init_from` takes.
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


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model_dir", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--curve", default=None, help="the run's curve CSV, copied as curve.csv")
    args = p.parse_args(argv)
    missing = [f for f in FILES if not os.path.isfile(os.path.join(args.model_dir, f))]
    if missing:
        print(f"error: {args.model_dir} has no {', '.join(missing)} yet", file=sys.stderr)
        return 1
    out = os.path.join(ROOT, "wip", args.name)
    staging = out + ".tmp"
    shutil.rmtree(staging, ignore_errors=True)
    os.makedirs(staging)
    for name in FILES:
        shutil.copyfile(os.path.join(args.model_dir, name), os.path.join(staging, name))
    store_float16(os.path.join(staging, "best_generator.weights.h5"))
    if args.curve:
        shutil.copyfile(args.curve, os.path.join(staging, "curve.csv"))
    shutil.rmtree(out, ignore_errors=True)
    os.replace(staging, out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
