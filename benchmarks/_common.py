"""Shared helpers for the benchmarks: one set of random paper-size weights in both PyTorch
(tests/torch_melgan.py) and TF (imported with tf_melgan.import_pytorch), machine info, RSS,
load average, and a child-process runner (TF threading must be fixed before TF starts)."""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for p in (ROOT, os.path.join(ROOT, "tests")):
    if p not in sys.path:
        sys.path.insert(0, p)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SAMPLE_RATE, HOP, N_MELS = 22050, 256, 80
DATA_CANDIDATES = [os.path.join(ROOT, "..", "shared", "data", "ljspeech-mini"),
                   os.path.join(ROOT, "demo_data")]


def data_path():
    for c in DATA_CANDIDATES:
        if os.path.isdir(c):
            return os.path.abspath(c)
    raise FileNotFoundError("no ljspeech-mini or demo_data")


def loadavg():
    return [round(x, 2) for x in os.getloadavg()]


def peak_rss_mb():
    """High-water mark of this process's RSS (MB); Linux ru_maxrss is in kB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _status_mb(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def rss_mb():
    """This process's RSS now (MB)."""
    return _status_mb("VmRSS")


def hwm_mb():
    """This process's peak RSS (MB) since start or the last `reset_peak_rss`."""
    return _status_mb("VmHWM")


def reset_peak_rss():
    """Linux: writing 5 to clear_refs resets the process's peak RSS (VmHWM)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def machine():
    info = {"python": platform.python_version(), "cpus": os.cpu_count()}
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            k, _, v = line.partition(":")
            if k.strip() in ("Model name", "CPU(s)", "Thread(s) per core", "L2 cache",
                             "L3 cache"):
                info[k.strip()] = v.strip()
            if k.strip() == "Flags":
                flags = v.split()
                info["simd"] = [f for f in flags if f.startswith(("avx", "fma", "sse4",
                                                                   "amx", "vnni"))]
    except OSError:
        pass
    return info


def versions():
    v = {}
    for name in ("numpy", "tensorflow", "keras", "torch", "ai_edge_litert"):
        try:
            mod = __import__(name)
            v[name] = getattr(mod, "__version__", "?")
        except ImportError:
            v[name] = None
    return v


def make_torch_models(seed=0, discriminator=False):
    import torch
    import torch_melgan as tm
    torch.manual_seed(seed)
    g = tm.randomize_(tm.Generator(80, 32, 3), seed)
    if not discriminator:
        return g
    d = tm.randomize_(tm.Discriminator(), seed + 1)
    return g, d


def prepare_model_dir(work_dir, seed=0):
    """WORK/torch_g.pt, torch_d.pt (random paper-size weights, weight norm kept) and
    WORK/model (a tf_melgan model dir with the same weights, data.path = ljspeech-mini).
    Returns the model dir; reused when present."""
    import torch
    model_dir = os.path.join(work_dir, "model")
    g_path = os.path.join(work_dir, "torch_g.pt")
    d_path = os.path.join(work_dir, "torch_d.pt")
    if os.path.isfile(os.path.join(model_dir, "config.yaml")):
        return model_dir
    os.makedirs(work_dir, exist_ok=True)
    g, d = make_torch_models(seed, discriminator=True)
    torch.save(g.state_dict(), g_path)
    torch.save(d.state_dict(), d_path)
    from tf_melgan.import_pytorch import import_state_dicts
    import_state_dicts(g_path, model_dir, d_path,
                       config_overrides=[f"data.path={data_path()}"])
    return model_dir


def load_torch_generator(work_dir, remove_weight_norm=True):
    import torch
    import torch_melgan as tm
    g = tm.Generator(80, 32, 3)
    g.load_state_dict(torch.load(os.path.join(work_dir, "torch_g.pt"), weights_only=True))
    if remove_weight_norm:
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for m in g.modules():
                if hasattr(m, "weight_g"):
                    torch.nn.utils.remove_weight_norm(m)
    return g.eval()


def real_mel(frames, seed=0):
    """A real log-mel [1, frames, 80] (ljspeech-mini clips concatenated, tiled)."""
    from tf_melgan.config import AudioConfig
    from tf_melgan.data import find_audio_files
    return clips_mel(sorted(find_audio_files(data_path()))[:12], AudioConfig(), frames)


def held_out_mel(config, model_dir, frames):
    """A real log-mel [1, frames, n_mels] from the model's held-out clips (the validation
    split its training never saw; concatenated, tiled): the timing input of LiteRT models."""
    from tf_melgan.deploy.convert.data import data_splits, resolve_data_path
    _, held_out = data_splits(config, resolve_data_path(config.data.path, model_dir))
    return clips_mel(held_out, config.audio, frames)


def clips_mel(files, audio_config, frames):
    """The log-mel of `files` concatenated, repeated or cut to [1, frames, n_mels] float32."""
    import numpy as np
    from tf_melgan.audio import load_audio, log_mel_numpy
    a = audio_config
    speech = np.concatenate([load_audio(f, a.sample_rate, a.peak) for f in files])
    mel = log_mel_numpy(speech, a)
    mel = np.tile(mel, (-(-frames // mel.shape[0]), 1))[:frames]
    return np.ascontiguousarray(mel[None], np.float32)


def run_child(module, args, threads, timeout=None):
    """Runs `python -m module args --threads N --child_out TMP` and returns its JSON."""
    out = f"/tmp/_bench_child_{os.getpid()}_{threads}.json"
    cmd = [sys.executable, "-m", module, *args, "--threads", str(threads), "--child_out", out]
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT, timeout=timeout)
    with open(out) as f:
        return json.load(f)


def timed_rounds(fns, repeats, warmup=1, log=None):
    """fns: {name: zero-arg callable}. Round-robin: each round calls every fn once (in
    turn), so load changes hit all alike. Returns {name: [seconds of timed rounds]}."""
    times = {n: [] for n in fns}
    for r in range(warmup + repeats):
        for n, fn in fns.items():
            t = time.perf_counter()
            fn()
            dt = time.perf_counter() - t
            if r >= warmup:
                times[n].append(dt)
        if log:
            log(f"  round {r + 1}/{warmup + repeats} done, load {loadavg()[0]}")
    return times


def litert_interpreter(path, mel, threads):
    """(LiteRT interpreter of the .tflite `path` with `threads` threads (XNNPACK), its output
    tensor index), `mel` set and tensors allocated once: a timed invoke() is the model alone."""
    from ai_edge_litert.interpreter import Interpreter
    interp = Interpreter(model_path=path, num_threads=threads)
    (inp,), (out,) = interp.get_input_details(), interp.get_output_details()
    if inp["shape_signature"][1] < 0:
        interp.resize_tensor_input(inp["index"], list(mel.shape))
    interp.allocate_tensors()
    interp.set_tensor(inp["index"], mel)
    return interp, out["index"]


def time_litert(paths, mel, seconds, threads, repeats, warmup=2):
    """x real time of .tflite models on one utterance (`mel`, `seconds` of audio). paths:
    {name: .tflite}. The models take turns (timed_rounds), so a change in a shared
    machine's load hits them all alike. Returns ({name: {median_s, min_s, x_real_time}},
    {name: (interpreter, output index)}: each holds its output of `mel`)."""
    import numpy as np
    interpreters = {name: litert_interpreter(path, mel, threads) for name, path in paths.items()}
    times = timed_rounds({name: interp.invoke for name, (interp, _) in interpreters.items()},
                         repeats, warmup)
    figures = {}
    for name, t in times.items():
        median = float(np.median(t))
        figures[name] = {"median_s": median, "min_s": float(np.min(t)),
                         "x_real_time": seconds / median}
    return figures, interpreters


def add_run_arguments(parser, out_name: str):
    """The flags every benchmark shares: repetitions, warm-up, where results go."""
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--work_dir", default="/tmp/melgan_bench")
    parser.add_argument("--out", default=f"/tmp/melgan_bench/{out_name}")
    parser.add_argument("--child_out", default=None, help=argparse.SUPPRESS)


def parse_run_arguments(parser, argv):
    """Parses, enforcing the project's median-of-at-least-5 rule."""
    args = parser.parse_args(argv)
    if args.repeats < 5:
        parser.error("--repeats must be >= 5")
    args.variants = [v for v in args.variants.split(",") if v]
    return args
