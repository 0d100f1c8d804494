#!/usr/bin/env python
"""Time per training step of the paper config (batch 16 x 8192 samples) against PyTorch:

    python -m benchmarks.train_step [--batch 16] [--threads 2] [--repeats 5] [--out F.json]
    python -m benchmarks.train_step --config configs/demo.yaml --variants tf_function,tf_function_xla

Variants (same process, same weights, same real batch, taking turns round by round, median
of --repeats after --warmup): tf_melgan's MelGAN.train_step under tf.function, the
discriminator's grouped convs in the native op (tf_melgan.native; what training runs with
training.jit_compile false); `tf_function_einsum`, the same with them as frame + einsum
(not in the default list); under tf.function(jit_compile=True) (what
training.jit_compile true makes Keras use; the einsum formulation); and a
PyTorch step written here with tests/torch_melgan.py's Generator/Discriminator (weight norm
kept, as in training), the same losses and the same order: G forward once; D update on real
+ detached fake (hinge); G loss = hinge adversarial + 10 * feature matching with the updated
D on the same fake, the real features from the pass before the D update; Adam(1e-4, 0.5,
0.9); plus the log-mel L1 of the fake (MelGAN.train_step computes it too). Both start from
the same weights (PyTorch state_dicts imported with tf_melgan.import_pytorch).

Also: tf.data throughput alone (tf_melgan.data.train_dataset on ljspeech-mini, batches/s
after warm-up) against the step rate. Each thread count runs in its own child process.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from benchmarks._common import (add_run_arguments, data_path, loadavg, machine,
                                parse_run_arguments, peak_rss_mb, prepare_model_dir, run_child,
                                timed_rounds, versions)


def torch_step_fn(work_dir, mel, audio, config):
    import torch
    import torch.nn.functional as F
    import torch_melgan as tm
    g, d = tm.Generator(80, 32, 3), tm.Discriminator()
    g.load_state_dict(torch.load(os.path.join(work_dir, "torch_g.pt"), weights_only=True))
    d.load_state_dict(torch.load(os.path.join(work_dir, "torch_d.pt"), weights_only=True))
    g.train(), d.train()
    o = config.g_optimizer
    opt_g = torch.optim.Adam(g.parameters(), lr=o.learning_rate, betas=(o.beta_1, o.beta_2))
    o = config.d_optimizer
    opt_d = torch.optim.Adam(d.parameters(), lr=o.learning_rate, betas=(o.beta_1, o.beta_2))
    a2m = tm.Audio2Mel()
    x = torch.from_numpy(mel).transpose(1, 2).contiguous()      # [B, 80, frames]
    y = torch.from_numpy(audio)[:, None]                        # [B, 1, samples]
    lam, n_layers = config.loss.lambda_feat, 4
    wt = (1.0 / 3) * (4.0 / (n_layers + 1))

    def step():
        fake = g(x)
        d_fake = d(fake.detach())
        d_real = d(y)
        loss_d = sum(F.relu(1 - r[-1]).mean() + F.relu(1 + f[-1]).mean()
                     for r, f in zip(d_real, d_fake))
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        d_fake = d(fake)
        adv = sum(-f[-1].mean() for f in d_fake)
        fm = sum(wt * F.l1_loss(f_, r_.detach())
                 for r, f in zip(d_real, d_fake) for r_, f_ in zip(r[:-1], f[:-1]))
        loss_g = adv + lam * fm
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        with torch.no_grad():
            l1 = F.l1_loss(a2m(fake.detach()), x)
        return float(loss_d), float(loss_g), float(l1)
    return step


def child(args):
    n = args.threads
    import keras
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(n)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    import numpy as np
    import torch
    torch.set_num_threads(n)
    torch.set_num_interop_threads(1)

    from tf_melgan.checkpoint import restore_weights
    from tf_melgan.config import load_config
    from tf_melgan.data import AudioSource, find_audio_files, split_files, train_dataset
    from tf_melgan.model import MelGAN, make_optimizer

    model_dir = os.path.join(args.work_dir, "model")
    if not args.batch and not args.config:
        args.batch = 16  # the paper's
    batch = [f"training.batch_size={args.batch}"] if args.batch else []
    config = load_config(args.config or os.path.join(model_dir, "config.yaml"), batch)
    args.batch = config.training.batch_size
    res = {"threads": n, "batch": args.batch, "segment": config.training.segment_length,
           "config": args.config or "paper (random weights shared with PyTorch)",
           "load_start": loadavg()}
    log = lambda m: print(m, flush=True)  # noqa: E731

    # --- tf.data alone
    train_files, _ = split_files(find_audio_files(data_path()), config.data.validation_clips,
                                  config.data.holdout)
    source = AudioSource(train_files, config.audio.sample_rate, config.audio.peak,
                         verbose=False)
    ds = iter(train_dataset(source, config))
    mel, audio = (np.asarray(t) for t in next(ds))
    for _ in range(args.data_warmup):
        next(ds)
    t = time.perf_counter()
    for _ in range(args.data_batches):
        next(ds)
    res["tf_data_batches_per_s"] = args.data_batches / (time.perf_counter() - t)
    log(f"  tf.data alone: {res['tf_data_batches_per_s']:.1f} batches/s "
        f"(batch {args.batch} x {config.training.segment_length})")
    del ds

    # --- TF: MelGAN.train_step, plain tf.function and XLA
    keras.utils.set_random_seed(config.training.seed)
    gan = MelGAN.from_config_dataclass(config)
    gan.compile(make_optimizer(config.g_optimizer), make_optimizer(config.d_optimizer))
    if not args.config:  # else the config's own (seeded) random init
        restore_weights(tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints")),
                        generator=gan.generator, discriminator=gan.discriminator)
    data = (tf.constant(mel), tf.constant(audio))
    fns, first = {}, {}
    steps = {"tf_function": tf.function(gan.train_step),
             "tf_function_einsum": tf.function(gan.train_step),
             "tf_function_xla": tf.function(gan.train_step, jit_compile=True)}
    for name in args.variants:
        t = time.perf_counter()
        if name in steps:
            # Read when the function is traced (its first call, here): D's grouped convs
            # through tf_melgan.native only in the plain tf.function (what training uses).
            gan.discriminator.set_grouped_conv("native" if name == "tf_function" else "einsum")
            f = steps[name]
            out = f(data)
            fn = (lambda f=f: {k: float(v) for k, v in f(data).items()})
            log(f"  {name} first step {time.perf_counter() - t:.1f} s: "
                f"{ {k: round(float(v), 4) for k, v in out.items()} }")
        elif name == "pytorch":
            fn = torch_step_fn(args.work_dir, mel, audio, config)
            out = fn()
            log(f"  pytorch first step {time.perf_counter() - t:.1f} s: d_loss, g_loss, "
                f"mel_l1 = {[round(v, 4) for v in out]}")
        first[name] = time.perf_counter() - t
        fns[name] = fn
    load0 = loadavg()
    times = timed_rounds(fns, args.repeats, args.warmup, log)
    res["load_rounds"] = [load0, loadavg()]
    tmed = float(np.median(times["pytorch"])) if "pytorch" in times else None
    res["rows"] = [{"variant": k, "median_s": float(np.median(v)), "min_s": float(min(v)),
                    "times_s": v, "first_step_s": first[k],
                    "steps_per_s": 1 / float(np.median(v)),
                    "ratio_to_pytorch": float(np.median(v)) / tmed if tmed else None}
                   for k, v in times.items()]
    res["peak_rss_mb"] = peak_rss_mb()
    res["load_end"] = loadavg()
    print_table(res)
    with open(args.child_out, "w") as f:
        json.dump(res, f, indent=2)


def print_table(r):
    print(f"\ntraining step ({r.get('config', 'paper')}), batch {r['batch']} x {r['segment']}, "
          f"{r['threads']} thread(s); load {r['load_rounds'][0][0]} -> {r['load_rounds'][1][0]}")
    print(f"  {'variant':18s} {'median':>8s} {'min':>8s} {'steps/s':>8s} {'/ torch':>8s} "
          f"{'first':>7s}")
    for x in r["rows"]:
        ratio = f"{x['ratio_to_pytorch']:.2f}" if x["ratio_to_pytorch"] else "-"
        print(f"  {x['variant']:18s} {x['median_s']:7.2f}s {x['min_s']:7.2f}s "
              f"{x['steps_per_s']:8.3f} {ratio:>8s} {x['first_step_s']:6.1f}s")
    print(f"  tf.data alone: {r['tf_data_batches_per_s']:.1f} batches/s; peak RSS "
          f"{r['peak_rss_mb']:.0f} MB")
    sys.stdout.flush()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=None,
                   help="default: 16 (paper), or the --config's training.batch_size")
    p.add_argument("--config", default=None,
                   help="time this YAML config (e.g. configs/demo.yaml) instead of the paper "
                        "model; TF variants only")
    p.add_argument("--threads", default="2", help="comma list, e.g. 1,2")
    p.add_argument("--variants", default="tf_function,tf_function_xla,pytorch",
                   help="of tf_function (native grouped convs), tf_function_einsum, "
                        "tf_function_xla, pytorch")
    p.add_argument("--data_batches", type=int, default=20)
    p.add_argument("--data_warmup", type=int, default=5)
    add_run_arguments(p, "train_step.json")
    args = parse_run_arguments(p, argv)
    if args.child_out:
        args.threads = int(args.threads)
        child(args)
        return 0
    if args.config and "pytorch" in args.variants:
        p.error("--config times the TF variants only (the PyTorch model is the paper's)")
    load_start = loadavg()
    if not args.config:
        prepare_model_dir(args.work_dir)
    forward = ["--variants", ",".join(args.variants),
               *(["--batch", str(args.batch)] if args.batch else []),
               *(["--config", os.path.abspath(args.config)] if args.config else []),
               "--repeats", str(args.repeats), "--warmup", str(args.warmup),
               "--data_batches", str(args.data_batches), "--data_warmup",
               str(args.data_warmup), "--work_dir", args.work_dir]
    runs = [run_child("benchmarks.train_step", forward, int(t))
            for t in args.threads.split(",")]
    for r in runs:
        print_table(r)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"machine": machine(), "versions": versions(), "load_start": load_start,
                   "load_end": loadavg(), "args": vars(args), "runs": runs}, f, indent=2)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
