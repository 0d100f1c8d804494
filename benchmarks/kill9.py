#!/usr/bin/env python
"""Fault trial: train, kill -9 at a random moment, restart; N times on one model dir.

    python -m benchmarks.kill9 [--runs 20] [--seed 0] [--work_dir /tmp/melgan_kill9] [--out F.json]

Each run starts `python -m tf_melgan.train` on the same --model_dir (a tiny model on
ljspeech-mini, else demo_data; validation, best model and a sample every 3 steps, a
checkpoint every 3 steps, so that writes are frequent and kills often land in one), waits for
its first training step and kills it with SIGKILL after a further uniform(0, --window) s.
The child reports each finished step on stdout (StopAt's batch end, patched in the child
only). After every kill the model dir is inspected from this process:

  corrupt  files that do not load: config.yaml, best.json, best_generator.weights.h5 (as
           synthesize loads it), every checkpoint listed in checkpoints/checkpoint (read in
           full, checked finite), samples/*.wav;
  stale    checkpoints still listed whose index is gone: TensorFlow's manager records the
           list before it deletes the oldest checkpoint and again after, so a kill in between
           leaves the old name listed (never the latest; the next save drops it) and maybe
           its data file (debris);
  debris   what the cut-off writes left (tf_melgan.atomic temporaries, ckpt-N_temp/,
           orphaned checkpoint files): the next start must remove it;
  lost     steps finished before the kill minus the step of the newest listed checkpoint.

The next run must resume from exactly that newest checkpoint ("resumed from" in its log)
and remove the debris. A last run trains 2 steps past the last checkpoint and must exit 0.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

from benchmarks._common import ROOT, data_path, loadavg

TINY = ["generator.ngf=8", "discriminator.ndf=4", "discriminator.max_channels=32",
        "discriminator.num_scales=2", "training.batch_size=2", "training.segment_length=2048",
        "data.eval_segment_length=4096", "data.validation_clips=1",
        "training.steps_per_epoch=3", "training.checkpoint_every=3",
        "training.sample_every=3", "training.keep_checkpoints=3"]

CHILD = """
import sys
from tf_melgan import callbacks
batch_end = callbacks.StopAt.on_train_batch_end
def report(self, batch, logs=None):
    print(f"STEP {callbacks._step(self.gan)}", flush=True)
    return batch_end(self, batch, logs)
callbacks.StopAt.on_train_batch_end = report
from tf_melgan.train import cli
sys.argv[0] = "train"
cli()
"""


def command(model_dir, steps):
    cmd = [sys.executable, "-c", CHILD, "--config", "configs/base.yaml", "--model_dir",
           model_dir, "--verbose", "0", "--strategy", "default"]
    for override in TINY + [f"training.steps={steps}", f"data.path={data_path()}"]:
        cmd += ["--set", override]
    return cmd


def env():
    e = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="-1")
    e.pop("TF_CONFIG", None)
    return e


def start(model_dir, steps, log_path):
    log = open(log_path, "w")
    proc = subprocess.Popen(command(model_dir, steps), cwd=ROOT, env=env(), text=True,
                            stdout=subprocess.PIPE, stderr=log)
    log.close()
    return proc


def read_steps(proc, until=None, deadline=None):
    """Reads the child's STEP lines; returns the last step seen, stopping at the first one
    if `until` is 'first', or when `deadline` (monotonic) passes / the child ends."""
    import selectors
    last = None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    while True:
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        if deadline is not None and timeout == 0.0:
            return last
        if not sel.select(timeout):
            return last
        line = proc.stdout.readline()
        if not line:
            return last
        if line.startswith("STEP "):
            last = int(line.split()[1])
            if until == "first":
                return last


def resumed_from(log_path):
    with open(log_path, errors="replace") as f:
        for line in f:
            if "resumed from " in line:
                return int(line.rsplit("ckpt-", 1)[1].split()[0])
    return None


def removed_count(log_path):
    with open(log_path, errors="replace") as f:
        for line in f:
            if "leftover(s) of interrupted saves" in line:
                return int(line.split("removed ", 1)[1].split()[0])
    return 0


def inspect(model_dir):
    """(newest listed checkpoint step or None, corrupt files, debris, stale list entries)
    of a model dir."""
    import numpy as np
    import soundfile as sf
    import tensorflow as tf

    from tf_melgan.atomic import TMP_PREFIX
    from tf_melgan.checkpoint import is_complete_checkpoint, load_generator
    from tf_melgan.config import load_config

    corrupt, debris = [], []

    def check(name, fn):
        try:
            fn()
        except Exception as e:  # noqa: BLE001 - any failure to load is corruption
            corrupt.append(f"{name}: {type(e).__name__}: {str(e).splitlines()[0][:120]}")

    path = lambda *p: os.path.join(model_dir, *p)  # noqa: E731
    if os.path.exists(path("config.yaml")):
        check("config.yaml", lambda: load_config(path("config.yaml")))
    if os.path.exists(path("best.json")):
        check("best.json", lambda: float(json.load(open(path("best.json")))["val_mel_l1"]))
    if os.path.exists(path("best_generator.weights.h5")):
        check("best_generator.weights.h5", lambda: load_generator(model_dir, "best"))
    ckpt_dir = path("checkpoints")
    state = tf.train.get_checkpoint_state(ckpt_dir) if os.path.isdir(ckpt_dir) else None
    listed = [os.path.join(ckpt_dir, os.path.basename(p))
              for p in (state.all_model_checkpoint_paths if state else [])]

    def read_all(prefix):
        reader = tf.train.load_checkpoint(prefix)
        for name, _ in tf.train.list_variables(prefix):
            value = reader.get_tensor(name)
            if isinstance(value, np.ndarray) and value.dtype.kind == "f":
                assert np.all(np.isfinite(value)), f"{name} not finite"

    stale = []
    for prefix in listed:
        if not os.path.exists(prefix + ".index"):  # swept, the list not yet rewritten
            stale.append(os.path.relpath(prefix, model_dir))
        else:
            check(os.path.relpath(prefix, model_dir), lambda p=prefix: read_all(p))
    for name in sorted(os.listdir(path("samples"))) if os.path.isdir(path("samples")) else []:
        if name.endswith(".wav"):
            check(f"samples/{name}", lambda n=name: sf.read(path("samples", n)))
    newest_prefix = listed[-1] if listed else None
    for folder in (model_dir, ckpt_dir, path("samples")):
        if os.path.isdir(folder):
            for name in os.listdir(folder):
                prefix = os.path.join(folder, name.split(".")[0])
                if name.startswith(TMP_PREFIX) or name.endswith("_temp") or \
                        name.startswith("checkpoint.tmp") or (
                        name.startswith("ckpt-") and prefix != newest_prefix
                        and not is_complete_checkpoint(prefix)):
                    debris.append(os.path.relpath(os.path.join(folder, name), model_dir))
    newest = int(listed[-1].rsplit("-", 1)[1]) if listed else None
    return newest, corrupt, sorted(debris), stale


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--window", type=float, default=6.0,
                   help="kill uniformly within this many seconds after the first step")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work_dir", default="/tmp/melgan_kill9")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    rng = random.Random(args.seed)
    model_dir = os.path.join(args.work_dir, "model")
    shutil.rmtree(args.work_dir, ignore_errors=True)
    os.makedirs(args.work_dir)
    t0 = time.time()
    trials, expected, previous_debris = [], None, []
    for i in range(args.runs + 1):
        last = i == args.runs
        log_path = os.path.join(args.work_dir, f"run{i:02d}.log")
        steps = (expected or 0) + 2 if last else 10**6
        proc = start(model_dir, steps, log_path)
        first = read_steps(proc, until="first")
        if first is None and not last:  # ended before training: a failure
            proc.wait()
            with open(log_path, errors="replace") as f:
                tail = f.read()[-2000:]
            print(f"run {i} exited with {proc.returncode} before its first step:\n{tail}")
            return 1
        resumed = resumed_from(log_path)
        trial = {"run": i, "first_step": first, "resumed_from": resumed,
                 "expected_resume": expected,
                 "resume_ok": resumed == expected,
                 "debris_before": previous_debris, "removed_on_start": removed_count(log_path)}
        if last:
            read_steps(proc)
            trial["exit"] = proc.wait(timeout=600)
            trial["final_step"] = steps
        else:
            delay = rng.uniform(0, args.window)
            done = read_steps(proc, deadline=time.monotonic() + delay)
            proc.send_signal(signal.SIGKILL)
            rest = proc.stdout.read()  # steps printed just before the kill
            for line in rest.splitlines():
                if line.startswith("STEP "):
                    done = int(line.split()[1])
            proc.wait()
            newest, corrupt, debris, stale = inspect(model_dir)
            # A checkpoint is saved before the child reports its step: done >= newest.
            done = max(first if done is None else done, newest or 0)
            trial.update({"kill_after_first_step_s": round(delay, 2), "steps_done": done,
                          "newest_checkpoint": newest,
                          "lost_steps": done - (newest or 0),
                          "corrupt": corrupt, "debris": debris, "stale_list_entries": stale})
            expected, previous_debris = newest, debris
        trials.append(trial)
        print(json.dumps(trial), flush=True)

    kills = trials[:-1]
    summary = {
        "runs": args.runs,
        "resumed_from_newest_checkpoint": sum(t["resume_ok"] for t in trials[1:]),
        "restarts": len(trials) - 1,
        "lost_steps": {"mean": round(sum(t["lost_steps"] for t in kills) / len(kills), 2),
                       "max": max(t["lost_steps"] for t in kills),
                       "checkpoint_every": 3},
        "corrupt_files": sum(len(t["corrupt"]) for t in kills),
        "kills_that_left_debris": sum(bool(t["debris"]) for t in kills),
        "stale_list_entries": sum(len(t["stale_list_entries"]) for t in kills),
        "debris_left_after_restart": sum(
            len(t["debris_before"]) - t["removed_on_start"] for t in trials[1:]),
        "final_run_exit": trials[-1]["exit"],
        "wall_s": round(time.time() - t0, 1), "loadavg": loadavg(),
    }
    print(json.dumps(summary, indent=1))
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"summary": summary, "trials": trials}, f, indent=1)
    ok = (summary["resumed_from_newest_checkpoint"] == summary["restarts"]
          and summary["corrupt_files"] == 0 and summary["final_run_exit"] == 0
          and summary["debris_left_after_restart"] == 0)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
