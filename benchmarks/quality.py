#!/usr/bin/env python
"""Quality and speed of a trained generator and of its LiteRT conversions, on held-out clips:

    python -m benchmarks.quality --model_dir runs/demo [--modes float32,fp16,int8,int8_minmax]
                                 [--clips 4] [--seconds S | --max_frames N] [--speed]
                                 [--out F.json] [--layers]

For each held-out clip of the model's data (config data.path, the validation split the
training run never saw; its first --seconds or --max_frames): ground-truth audio -> log-mel
-> vocoder, for the Keras model (weight norm folded) and each .tflite made by
tf_melgan.deploy.convert (dynamic length, LiteRT + XNNPACK, --threads 2). --modes:

- float32, fp16: convert's modes (float32 is always made);
- int8: what `--quantize` gives. On a model dir with a quantization-aware MODEL_DIR/int8
  (qat_ranges.json; the shipped `ljspeech`) that is the fine-tuned int8 generator with its
  QAT ranges, on any other the float weights with percentile ranges: the table's label says
  which, from the .tflite manifest's `activation_ranges`;
- int8_percentile: the float weights with percentile ranges (`--ranges` default,
  DEFAULT_RANGES) even on a QAT model dir; int8_minmax: the same with the converter's own
  min/max ranges (`--ranges minmax`).

`--speed` adds x real time (audio seconds / wall seconds) per .tflite: one --speed_frames
utterance (861 = 10 s; the held-out clips' log-mels, tiled, as benchmarks/tflite_speed.py),
warm-up then the median of --repeats invokes, the models taking turns (benchmarks/_common.py
time_litert). The Keras model is not timed: LiteRT float32 is its deployed form (the same
output to ~100 dB SNR). Reported per variant, averaged over the clips, in two markdown
tables (the first: log-mel L1, vs float, voicing, F0 error, PESQ-wb, STOI, level in pauses,
x real time) and in --out's JSON ("table": the first table's rows; "summary": every figure):

- log-mel L1 to the ground truth (the official model-selection criterion), over all
  frames, over speech frames only (frames within 40 dB of the clip's loudest) and over
  the mel bins within 60 dB of the clip's loudest bin, and over the pauses (the other
  frames: the shipped espeak-ng corpus has digital silence there, where any noise floor
  scores ~1-3 per bin); the output's level in the pauses (dBFS, RMS);
- SNR against the Keras model's output (how much conversion changes the waveform) and
  against the ground truth (GAN vocoders do not keep the phase: expect ~0 dB, listed
  because it is asked for, not because it ranks vocoders);
- tf_melgan.metrics: pyin voicing agreement and the median F0 error in cents on frames
  voiced in both (speech-likeness a log-mel L1 misses), PESQ-wb and STOI at 16 kHz, and
  the frame-rate comb (dB);
- Griffin-Lim (librosa.feature.inverse.mel_to_audio, 32 iterations) from the same mel, as
  a reference point: intelligible but phasey speech.

`--dnsmos` adds Microsoft's non-intrusive MOS predictor (tf_melgan.metrics.dnsmos: P.835
OVRL, SIG, BAK and P.808, the ONNX models of the `speechmos` package run by onnxruntime;
pip install -e '.[eval]') for every variant, and a row for the recordings themselves,
scored in the same run.

`--png DIR` writes log-spectrogram PNGs of the first `--png_clips` clips (truth, Keras
float, each .tflite, Griffin-Lim), one file per clip.

`--layers` (with an int8 mode) tells which part of the model the int8 error comes from
(benchmarks/int8_layers.py): the ten worst layers by LiteRT's QuantizationDebugger, and
int8 variants with parts kept in float32, scored beside the others.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from benchmarks._speech import griffin_lim, rms_dbfs, speech_frames, spectrogram_png  # noqa: E402


def _fmt(value, spec, unit=""):
    return "-" if value is None else f"{value:{spec}}{unit}"


# --modes: the converter's (mode, ranges) for each. 'int8' is what --quantize gives: on a
# model dir with a quantization-aware MODEL_DIR/int8 (the shipped ljspeech) that generator
# with its QAT ranges, else the float weights with percentile ranges; an explicit `ranges`
# always quantizes the float weights ('percentile' = the converter's DEFAULT_RANGES).
CONVERSIONS = {"float32": ("float32", None), "fp16": ("fp16", None), "int8": ("int8", None),
               "int8_percentile": ("int8", "percentile"), "int8_minmax": ("int8", "minmax")}
SPEED_WARMUP = 2  # rounds before the timed ones (as benchmarks/tflite_speed.py)


def convert_mode(model_dir, path, mode):
    """Converts MODEL_DIR for --modes `mode` into `path` (kept when it is there: --work_dir
    reuse); returns the .tflite's manifest (a dict: it says which ranges int8 took)."""
    from tf_melgan.deploy.convert import DEFAULT_RANGES, convert
    from tf_melgan.deploy.manifest import read_manifest
    kept = os.path.exists(path) and read_manifest(path)
    if kept:
        return kept.to_dict()
    mode_, ranges = CONVERSIONS[mode]
    t = time.time()
    manifest = convert(model_dir, path, mode_, overwrite=True,
                       ranges=DEFAULT_RANGES if ranges == "percentile" else ranges)
    print(f"converted {mode} in {time.time() - t:.0f} s", flush=True)
    return manifest


def variant_label(mode, manifest):
    """The table's name of a --modes variant, from what its manifest says it is."""
    from tf_melgan.deploy.manifest import QAT_RANGES
    ranges = manifest.get("activation_ranges")
    if manifest.get("quantization") != "int8":
        return f"LiteRT {mode}"
    how = ("QAT: MODEL_DIR/int8 with its ranges" if ranges == QAT_RANGES else
           "min/max ranges" if ranges == "minmax" else f"percentile ranges {ranges}")
    return f"LiteRT int8 ({how}{'; `--quantize`' if mode == 'int8' else ''})"


# The printed tables: (column, summary key, format, unit). TABLE is issue 13's.
TABLE = [("log-mel L1", "log_mel_l1", ".3f", ""), ("vs float", "vs_float_pct", "+.1f", "%"),
         ("voicing", "voicing", ".3f", ""), ("F0 error", "f0_error_cents", ".0f", " c"),
         ("PESQ-wb", "pesq_wb", ".2f", ""), ("STOI", "stoi", ".3f", ""),
         ("level in pauses", "pause_rms_dbfs", ".1f", " dBFS"),
         ("x real time", "x_real_time", ".1f", "")]
DETAILS = [("L1 speech frames", "log_mel_l1_speech", ".3f", ""),
           ("L1 pauses", "log_mel_l1_pauses", ".3f", ""),
           ("L1 bins within 60 dB", "log_mel_l1_60db", ".3f", ""),
           ("SNR vs Keras", "snr_vs_keras_db", ".1f", " dB"),
           ("SNR vs truth", "snr_vs_truth_db", ".1f", " dB"),
           ("frame comb", "frame_comb_db", ".1f", " dB")]


MOS = [("DNSMOS OVRL", "dnsmos_ovrl", ".2f", ""), ("SIG", "dnsmos_sig", ".2f", ""),
       ("BAK", "dnsmos_bak", ".2f", ""), ("P.808", "dnsmos_p808", ".2f", "")]


def markdown_table(summary, columns):
    """One row per variant (its label), '-' where a figure does not apply."""
    lines = ["| variant | " + " | ".join(c[0] for c in columns) + " |",
             "|---|" + "---|" * len(columns)]
    for s in summary.values():
        cells = [_fmt(s.get(key), spec, unit) for _, key, spec, unit in columns]
        lines.append(f"| {s['label']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model_dir", required=True)
    p.add_argument("--modes", default="float32,fp16,int8,int8_minmax",
                   help=f"LiteRT variants, of {','.join(CONVERSIONS)}: int8 = --quantize (a QAT "
                        "MODEL_DIR/int8 with its ranges when there is one, else percentile "
                        "ranges), int8_percentile = the float weights with percentile ranges "
                        "(--ranges default), int8_minmax = --ranges minmax; float32 always")
    p.add_argument("--clips", type=int, default=4)
    length = p.add_mutually_exclusive_group()
    length.add_argument("--max_frames", type=int, default=862,
                        help="each clip's first frames at most")
    length.add_argument("--seconds", type=float, default=None,
                        help="each clip's first seconds at most (as benchmarks/qat.py)")
    p.add_argument("--speed", action="store_true",
                   help="x real time of each .tflite on a --speed_frames utterance")
    p.add_argument("--speed_frames", type=int, default=861, help="861 = 10 s")
    p.add_argument("--repeats", type=int, default=15, help="--speed: timed rounds")
    p.add_argument("--threads", type=int, default=2, help="LiteRT threads")
    p.add_argument("--work_dir", default=None,
                   help="where the .tflite files go (temp dir); those there are reused")
    p.add_argument("--out", default=None, help="JSON results")
    p.add_argument("--layers", action="store_true", help="per-layer int8 error report")
    p.add_argument("--png", default=None, help="folder for spectrogram PNGs")
    p.add_argument("--png_clips", type=int, default=2)
    p.add_argument("--dnsmos", action="store_true",
                   help="DNSMOS for every variant and the recordings (needs .[eval])")
    args = p.parse_args(argv)
    modes = ["float32"] + [m for m in args.modes.split(",") if m not in ("", "float32")]
    unknown = [m for m in modes if m not in CONVERSIONS]
    if unknown:
        p.error(f"--modes: unknown {','.join(unknown)} (known: {','.join(CONVERSIONS)})")
    if args.speed and args.repeats < 5:
        p.error("--repeats must be >= 5")

    import tensorflow as tf
    from benchmarks._common import held_out_mel, loadavg, time_litert
    from tf_melgan.audio import load_audio, log_mel_numpy
    from tf_melgan.checkpoint import load_generator
    from tf_melgan.deploy.convert.data import data_splits, resolve_data_path
    from tf_melgan.deploy.litert import snr_db
    from tf_melgan.deploy.vocoder import load_vocoder
    from tf_melgan.metrics import dnsmos, pitch, speech_scores
    from tf_melgan.pretrained import resolve

    args.model_dir = resolve(args.model_dir)  # a shipped vocoder's name: its folder
    generator, config = load_generator(args.model_dir, which="best", fold=True)
    ac = config.audio
    if ac.mel_preset != "melgan" or ac.stats_path:
        sys.exit("quality.py handles the melgan mel preset without stats only")
    hop, sr = ac.hop_length, ac.sample_rate
    max_frames = args.max_frames if args.seconds is None else int(args.seconds * sr) // hop
    data = resolve_data_path(config.data.path, args.model_dir)
    train_files, held_out = data_splits(config, data)
    work = args.work_dir or tempfile.mkdtemp(prefix="quality_")
    os.makedirs(work, exist_ok=True)

    # name -> {label, tflite, manifest fields}; the Keras model first, Griffin-Lim last
    variants = {"keras": {"label": "Keras float"}}
    models = {}
    for mode in modes:
        path = os.path.join(work, f"vocoder_{mode}.tflite")
        manifest = convert_mode(args.model_dir, path, mode)
        variants[f"tflite_{mode}"] = {
            "label": variant_label(mode, manifest), "mode": mode, "tflite": path,
            "generator_dir": manifest["source"]["model_dir"],
            "activation_ranges": manifest.get("activation_ranges"),
            "size_mb": os.path.getsize(path) / 1e6}
        print(f"{mode}: {variants[f'tflite_{mode}']['label']}, generator of "
              f"{manifest['source']['model_dir']}", flush=True)
        models[mode] = load_vocoder(path, num_threads=args.threads)
    layers = None
    if args.layers and any(m.startswith("int8") for m in models):
        from benchmarks.int8_layers import float_layer_variants
        layers = float_layer_variants(generator, config, train_files, work, args.threads)
        for name, (variant, vocoder) in layers.variants.items():
            variants[f"tflite_{name}"] = variant
            models[name] = vocoder
    variants["griffin_lim"] = {"label": "Griffin-Lim, 32 iterations"}
    if args.dnsmos:
        variants["recordings"] = {"label": "recordings"}

    per = {name: [] for name in variants if name != "recordings"}
    recordings = []
    clips = []
    for path in held_out[:args.clips]:
        audio = load_audio(path, sr, ac.peak)
        frames = min(max_frames, len(audio) // hop)
        audio = audio[:frames * hop]
        mel = log_mel_numpy(audio, ac)[None].astype(np.float32)
        speech = speech_frames(mel[0])
        pauses = ~speech if not speech.all() else None
        loud = mel[0] > mel[0].max() - 3.0  # log10 units: 60 dB
        ref_pitch = pitch(audio, sr, hop)
        keras_out = np.asarray(generator(tf.constant(mel), training=False))[0]
        outs = {"keras": keras_out}
        for mode, vocoder in models.items():
            outs[f"tflite_{mode}"] = vocoder(mel)[0]
        outs["griffin_lim"] = griffin_lim(mel[0], ac)[:frames * hop]
        clips.append({"clip": os.path.basename(path), "seconds": frames * hop / sr,
                      "speech_frames_pct": float(100 * speech.mean())})
        for name, out in outs.items():
            out = np.pad(out, (0, frames * hop - len(out)))
            m = log_mel_numpy(out.astype(np.float32), ac)
            per[name].append({
                "log_mel_l1": float(np.mean(np.abs(m - mel[0]))),
                "log_mel_l1_speech": float(np.mean(np.abs(m[speech] - mel[0][speech]))),
                "log_mel_l1_60db": float(np.mean(np.abs(m - mel[0])[loud])),
                "log_mel_l1_pauses": None if pauses is None else
                float(np.mean(np.abs(m[pauses] - mel[0][pauses]))),
                "pause_rms_dbfs": None if pauses is None else
                rms_dbfs(out[:frames * hop].reshape(frames, hop)[pauses]),
                "snr_vs_keras_db": snr_db(keras_out, out) if name != "keras" else None,
                "snr_vs_truth_db": snr_db(audio, out),
                **speech_scores(audio, out, sr, hop, ref_pitch, mos=args.dnsmos)})
        if args.dnsmos:
            recordings.append(dnsmos(audio, sr))
        if args.png and len(clips) <= args.png_clips:
            spectrogram_png({"truth": audio, **outs}, sr,
                            os.path.join(args.png, f"{os.path.splitext(clips[-1]['clip'])[0]}.png"))
        print(f"  {os.path.basename(path)}: {frames} frames", flush=True)

    speed = None
    if args.speed:
        # After the quality pass, with the vocoders' interpreters idle: only the timed one runs.
        seconds = args.speed_frames * hop / sr
        timed = {name: v["tflite"] for name, v in variants.items() if "tflite" in v}
        load_before = loadavg()
        figures, _ = time_litert(timed, held_out_mel(config, args.model_dir, args.speed_frames),
                                 seconds, args.threads, args.repeats, SPEED_WARMUP)
        speed = {"frames": args.speed_frames, "seconds": seconds, "threads": args.threads,
                 "repeats": args.repeats, "warmup": SPEED_WARMUP, "loadavg_before": load_before,
                 "loadavg_after": loadavg(), "cpus": os.cpu_count(), "models": figures}

    summary = {}
    for name, rows in per.items():
        s = dict(variants[name])
        for key in rows[0]:
            vals = [r[key] for r in rows if r[key] is not None]
            s[key] = float(np.mean(vals)) if vals else None
        s["x_real_time"] = speed["models"][name]["x_real_time"] \
            if speed and name in speed["models"] else None
        summary[name] = s
    if recordings:  # DNSMOS only: the other figures compare an output with them
        summary["recordings"] = {"label": "recordings", **{
            key: float(np.mean([r[key] for r in recordings])) for key in recordings[0]}}
    float_l1 = summary["keras"]["log_mel_l1"]
    for name, s in summary.items():
        s["vs_float_pct"] = None if name in ("keras", "recordings") else \
            100 * (s["log_mel_l1"] / float_l1 - 1)
    seconds_each = ", ".join(sorted({f"{c['seconds']:.1f}" for c in clips}))
    print(f"\n{len(clips)} held-out clips ({seconds_each} s) of {data}; LiteRT + XNNPACK, "
          f"{args.threads} threads, dynamic length; log-mel L1 and level in pauses against "
          f"the ground truth, pitch by pyin, PESQ-wb and STOI at 16 kHz.")
    if speed:
        print(f"x real time: {speed['frames']} frames = {speed['seconds']:.2f} s of the "
              f"held-out clips' log-mels (tiled), median of {speed['repeats']} invokes after "
              f"{speed['warmup']} warm-up rounds, models in turn; load average "
              f"{speed['loadavg_before'][0]} -> {speed['loadavg_after'][0]} on "
              f"{speed['cpus']} CPUs. Keras: not timed.")
    print(markdown_table(summary, TABLE + (MOS if args.dnsmos else [])))
    print("\nMore figures, same clips:")
    print(markdown_table(summary, DETAILS))
    result = {"model_dir": os.path.abspath(args.model_dir), "data": data,
              "max_frames": max_frames, "clips": clips, "speed": speed,
              "table": [{"variant": s["label"],
                         **{key: s.get(key) for _, key, _, _ in TABLE + MOS}}
                        for s in summary.values()],
              "per_clip": per, "summary": summary}
    if layers is not None:
        worst, n = layers.report()
        result["int8_layers"] = worst
        print(f"\nint8 layers with the largest error (rmse / scale, of {n}):")
        for r in worst:
            print(f"  {r['rmse_over_scale']:.3f}  {r['op_name']:<16} {r['tensor_name']}")
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
