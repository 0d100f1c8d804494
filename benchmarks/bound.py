#!/usr/bin/env python
"""Compute bound for the generator: multiply-accumulates per second of audio from the layer
shapes, the machine's attainable GEMM rate, and the % of that bound inference reaches.

    python -m benchmarks.bound [--threads 1,2] [--inference_json /tmp/melgan_bench/inference.json]

MACs: forward hooks on the PyTorch model (tests/torch_melgan.py, same architecture as
tf_melgan's) record every conv's input/output shape for a 10 s mel (861 frames); a conv
costs out_len * out_ch * in_ch / groups * k, a transposed conv in_len * in_ch * out_ch /
groups * k (every input sample scattered over k outputs; the crop to frames * r is not
subtracted). FLOPs = 2 * MACs; bias, LeakyReLU, pads and tanh are not counted.

GEMM: float32 sgemm 4096^3 with numpy (OpenBLAS), tf.linalg.matmul and torch.mm, and LiteRT
(XNNPACK) FULLY_CONNECTED float32 and full-integer int8 ([1024, 1024] x [1024, 1024]), each
thread count in its own child process, median of >= 5 after warm-up. The best float32 figure
is "attainable fp32"; the int8 FULLY_CONNECTED figure is "attainable int8" (GOP/s, 2 ops
per MAC). With --inference_json, each variant's achieved GFLOP/s (or GOP/s for int8) =
2 * MACs/s-of-audio * x-real-time, as a % of the bound at the same thread count.
inference.py also measures the float GEMMs in its own children (start and end), so its
JSON carries a same-run bound; this script uses those when present.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from benchmarks._common import HOP, SAMPLE_RATE, loadavg, machine, run_child, versions


def generator_macs(frames=861):
    """{'per_second': MACs per second of audio, 'layers': [...]} of the paper generator."""
    import torch
    import torch.nn as nn

    from benchmarks._common import make_torch_models
    g = make_torch_models()
    layers = []

    def hook(module, inputs, output):
        x = inputs[0]
        cin, lin = x.shape[1], x.shape[2]
        cout, lout = output.shape[1], output.shape[2]
        k, groups = module.kernel_size[0], module.groups
        if isinstance(module, nn.ConvTranspose1d):
            macs = lin * cin * cout // groups * k
        else:
            macs = lout * cout * cin // groups * k
        layers.append({"type": type(module).__name__, "in": [cin, lin], "out": [cout, lout],
                       "k": k, "groups": groups, "macs": macs})

    for m in g.modules():
        if isinstance(m, (nn.Conv1d, nn.ConvTranspose1d)):
            m.register_forward_hook(hook)
    with torch.no_grad():
        g(torch.zeros(1, 80, frames))
    seconds = frames * HOP / SAMPLE_RATE
    total = sum(la["macs"] for la in layers)
    return {"frames": frames, "seconds": seconds, "macs": total,
            "per_second": total / seconds, "per_frame": total / frames, "layers": layers}


def _median_time(fn, repeats=7, warmup=2):
    import numpy as np
    ts = []
    for i in range(warmup + repeats):
        t = time.perf_counter()
        fn()
        if i >= warmup:
            ts.append(time.perf_counter() - t)
    return float(np.median(ts))


def float_gemms(threads, n=4096, repeats=7, torch_too=True):
    """GFLOP/s of an n^3 sgemm with numpy, TF and torch (threads already set by caller for
    TF; numpy's BLAS threads are fixed by the env set before numpy's import)."""
    import numpy as np
    import tensorflow as tf
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    flops = 2.0 * n ** 3
    out = {"numpy": flops / _median_time(lambda: a @ b, repeats) / 1e9}
    ta, tb = tf.constant(a), tf.constant(b)
    out["tf_matmul"] = flops / _median_time(lambda: tf.linalg.matmul(ta, tb).numpy(),
                                            repeats) / 1e9
    if torch_too:
        import torch
        xa, xb = torch.from_numpy(a), torch.from_numpy(b)
        out["torch_mm"] = flops / _median_time(lambda: torch.mm(xa, xb), repeats) / 1e9
    out["best"] = max(out.values())
    return out


def litert_fc(threads, work_dir, m=1024, k=1024, n=1024, repeats=7):
    """GFLOP/s (float32) and GOP/s (int8) of LiteRT FULLY_CONNECTED [m, k] x [k, n]."""
    import keras
    import numpy as np
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    from tf_melgan.deploy.litert import compute_kernels, op_problems, read_ops
    os.makedirs(work_dir, exist_ok=True)
    out = {}
    for mode in ("float32", "int8"):
        path = os.path.join(work_dir, f"fc_{m}x{k}x{n}_{mode}.tflite")
        if not os.path.isfile(path):
            keras.utils.set_random_seed(0)
            inp = keras.Input((k,), batch_size=m)
            model = keras.Model(inp, keras.layers.Dense(n, use_bias=False)(inp))
            sm = os.path.join(work_dir, f"fc_sm_{m}x{k}x{n}")
            archive = keras.export.ExportArchive()
            archive.track(model)
            archive.add_endpoint("serve", lambda x: model(x),
                                 input_signature=[tf.TensorSpec([m, k], tf.float32)])
            archive.write_out(sm, verbose=False)
            conv = tf.lite.TFLiteConverter.from_saved_model(sm)
            if mode == "int8":
                rng = np.random.default_rng(0)
                conv.optimizations = [tf.lite.Optimize.DEFAULT]
                conv.representative_dataset = lambda: (
                    [rng.standard_normal((m, k)).astype(np.float32)] for _ in range(4))
                conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            data = conv.convert()
            ops = read_ops(data)
            if op_problems(ops):
                raise RuntimeError(f"FC model: {op_problems(ops)}")
            with open(path, "wb") as f:
                f.write(data)
        kernels = compute_kernels(read_ops(path))
        interp = Interpreter(model_path=path, num_threads=threads)
        interp.allocate_tensors()
        d = interp.get_input_details()[0]
        x = np.random.default_rng(1).standard_normal((m, k)).astype(np.float32)
        if d["dtype"] != np.float32:
            s, z = d["quantization"]
            x = np.clip(np.round(x / s) + z, -128, 127).astype(d["dtype"])
        interp.set_tensor(d["index"], x)
        t = _median_time(interp.invoke, repeats)
        out[mode] = {"g_per_s": 2.0 * m * k * n / t / 1e9, "kernels": kernels}
    return out


def child(args):
    n = args.threads
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(n)  # numpy's BLAS; before numpy loads
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(n)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    import torch
    torch.set_num_threads(n)
    res = {"threads": n, "load_start": loadavg()}
    res["float_gemm_gflops"] = float_gemms(n)
    res["litert_fc"] = litert_fc(n, os.path.join(args.work_dir, "fc"))
    res["load_end"] = loadavg()
    with open(args.child_out, "w") as f:
        json.dump(res, f, indent=2)


def percent_table(macs_per_s, inference, bounds):
    """Rows: variant, threads, seconds, achieved G(FL)OP/s, bound, % of bound."""
    rows = []
    for run in inference["runs"]:
        t = run["threads"]
        fp32 = (run.get("gemm") or {}).get("best") or bounds[t]["float_gemm_gflops"]["best"]
        int8 = bounds.get(t, {}).get("litert_fc", {}).get("int8", {}).get("g_per_s")
        for e in run["utterances"]:
            for r in e["rows"]:
                achieved = 2 * macs_per_s * r["x_real_time"] / 1e9
                is_int8 = "int8" in r["variant"]
                bound = int8 if is_int8 else fp32
                rows.append({"variant": r["variant"], "threads": t, "seconds": e["seconds"],
                             "achieved": achieved, "bound": bound,
                             "bound_kind": "int8 LiteRT FC GOP/s" if is_int8 else
                             "fp32 sgemm GFLOP/s",
                             "percent": 100 * achieved / bound if bound else None,
                             "x_real_time_at_bound": bound * 1e9 / (2 * macs_per_s)
                             if bound else None})
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", default="1,2")
    p.add_argument("--inference_json", default=None)
    p.add_argument("--work_dir", default="/tmp/melgan_bench")
    p.add_argument("--out", default="/tmp/melgan_bench/bound.json")
    p.add_argument("--child_out", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child_out:
        args.threads = int(args.threads)
        child(args)
        return 0
    load_start = loadavg()
    macs = generator_macs()
    print(f"paper generator: {macs['macs'] / 1e9:.3f} GMAC for {macs['frames']} frames "
          f"({macs['seconds']:.3f} s) = {macs['per_second'] / 1e9:.3f} GMAC per second of "
          f"audio ({macs['per_frame'] / 1e6:.2f} MMAC per frame), "
          f"{2 * macs['per_second'] / 1e9:.2f} GFLOP/s-of-audio")
    bounds = {}
    for t in [int(x) for x in args.threads.split(",")]:
        res = run_child("benchmarks.bound", ["--work_dir", args.work_dir], t)
        bounds[t] = res
        g = res["float_gemm_gflops"]
        fc = res["litert_fc"]
        print(f"{t} thread(s): sgemm 4096^3 numpy {g['numpy']:.1f}, tf {g['tf_matmul']:.1f}, "
              f"torch {g['torch_mm']:.1f} GFLOP/s; LiteRT FC 1024^3 fp32 "
              f"{fc['float32']['g_per_s']:.1f} GFLOP/s, int8 {fc['int8']['g_per_s']:.1f} "
              f"GOP/s ({fc['int8']['kernels']}); load {res['load_start'][0]} -> "
              f"{res['load_end'][0]}; x real time at the fp32 bound "
              f"{g['best'] * 1e9 / (2 * macs['per_second']):.1f}, at the int8 bound "
              f"{fc['int8']['g_per_s'] * 1e9 / (2 * macs['per_second']):.1f}", flush=True)
    rows = []
    if args.inference_json:
        with open(args.inference_json) as f:
            inference = json.load(f)
        rows = percent_table(macs["per_second"], inference, bounds)
        print(f"\n{'variant':22s} thr  sec  achieved  bound    % of bound")
        for r in rows:
            print(f"{r['variant']:22s} {r['threads']:3d} {r['seconds']:4d} {r['achieved']:8.1f} "
                  f"{r['bound']:7.1f} {r['percent']:7.1f}%  ({r['bound_kind']})")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"machine": machine(), "versions": versions(), "load_start": load_start,
                   "load_end": loadavg(), "macs": macs, "bounds": bounds,
                   "percent_of_bound": rows}, f, indent=2)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
