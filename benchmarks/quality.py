#!/usr/bin/env python
"""Quality of a trained generator and of its LiteRT conversions, on held-out clips:

    python -m benchmarks.quality --model_dir runs/demo [--modes float32,fp16,int8,int8_minmax]
                                 [--clips 4] [--out F.json] [--layers]

For each held-out clip of the model's data (config data.path, the validation split the
training run never saw): ground-truth audio -> log-mel -> vocoder, for the Keras model
(weight norm folded) and each .tflite made by tflite/convert.py (dynamic length, LiteRT +
XNNPACK, 2 threads). Reported per variant, averaged over the clips:

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

`--png DIR` writes log-spectrogram PNGs of the first `--png_clips` clips (truth, Keras
float, each .tflite, Griffin-Lim), one file per clip.

`--layers` adds LiteRT's QuantizationDebugger on the int8 model: per-layer RMSE of the
int8 output against the float output of the same layer, divided by the quantization
scale, the ten worst layers; and int8 models with parts kept in float32 (FLOAT_VARIANTS:
only the waveform int8; the output layers float; the last stage float; tflite/convert.py
--float_layers, with the default percentile ranges), to tell which part of the model the
int8 error comes from.
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

SPEECH_DB = 40.0


def speech_frames(mel_log10: np.ndarray) -> np.ndarray:
    """Frames whose total mel energy is within SPEECH_DB of the clip's loudest frame."""
    energy = 10.0 * np.log10(np.sum(10.0 ** (2.0 * mel_log10), axis=-1) + 1e-20)
    return energy > energy.max() - SPEECH_DB


def rms_dbfs(x) -> float:
    return float(10.0 * np.log10(np.mean(np.square(x, dtype=np.float64)) + 1e-20))


def griffin_lim(mel_log10, audio_config):
    import librosa
    from tf_melgan.audio import mel_filters
    magnitude_mel = 10.0 ** mel_log10.T.astype(np.float64)
    basis = mel_filters(audio_config).astype(np.float64)  # [n_fft/2+1, n_mels]
    spec = librosa.feature.inverse.nnls(basis.T, magnitude_mel)
    return librosa.griffinlim(spec, n_iter=32, hop_length=audio_config.hop_length,
                              win_length=audio_config.win_length, n_fft=audio_config.n_fft,
                              random_state=0)


def layer_report(saved, calib, top=10):
    """LiteRT QuantizationDebugger on the int8 conversion (min/max ranges) of the
    SavedModel `saved`: worst layers by rmse / scale (0.29 = 1/sqrt(12) is a uniform
    rounding error of one step, the ideal)."""
    import csv

    import tensorflow as tf
    from tf_melgan.deploy.convert.quantize import make_converter
    from tf_melgan.deploy.manifest import INPUT_NAME
    # The debugger's interpreters do not resize their input: one length for all.
    frames = min(m.shape[1] for m in calib[:8])
    debugger = tf.lite.experimental.QuantizationDebugger(
        converter=make_converter(saved, "int8", lambda: ({INPUT_NAME: m} for m in calib)),
        debug_dataset=lambda: ([m[:, :frames]] for m in calib[:8]))
    debugger.run()
    path = os.path.join(tempfile.mkdtemp(prefix="quality_layers_"), "layers.csv")
    with open(path, "w") as f:
        debugger.layer_statistics_dump(f)
    with open(path) as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        r["rmse_over_scale"] = float(np.sqrt(float(r["mean_squared_error"]))) / float(r["scale"])
    rows.sort(key=lambda r: -r["rmse_over_scale"])
    keep = ("op_name", "tensor_name", "scale", "rmse_over_scale", "mean_error")  # CSV columns
    return [{k: r.get(k) for k in keep} for r in rows[:top]], len(rows)


# --layers variants: name -> the layers kept in float32 (tflite/convert.py --float_layers).
FLOAT_VARIANTS = {
    # Every op float32 except the waveform itself, which stays int8 ('/' is in the name of
    # every tensor of the model's scope, the waveform's is named after the call): what
    # 8-bit output audio costs alone.
    "int8_output_only": ("/",),
    # int8 up to the last residual stack; conv_post, tanh and the waveform in float32.
    "int8_float_output": ("output",),
    # ... and the last stage (upsampler + residual stack) in float32 too.
    "int8_float_last_stage": ("up_3", "res_3_", "output"),
}


def spectrogram_png(signals: dict, sr: int, path: str, n_fft=1024, hop=256):
    """One row per signal: its log-magnitude spectrogram (dB, 80 dB range, 0-8 kHz)."""
    import librosa
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(len(signals), 1, figsize=(10, 1.9 * len(signals)), sharex=True)
    for ax, (name, x) in zip(axes, signals.items()):
        spec = np.abs(librosa.stft(np.asarray(x, np.float32), n_fft=n_fft, hop_length=hop))
        db = librosa.amplitude_to_db(spec, ref=np.max, top_db=80.0)
        ax.imshow(db, origin="lower", aspect="auto", cmap="magma",
                  extent=[0, len(x) / sr, 0, sr / 2000])
        ax.set_ylim(0, 8)
        ax.set_ylabel("kHz")
        ax.set_title(name, fontsize=9, loc="left")
    axes[-1].set_xlabel("seconds")
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def _fmt(value, spec, unit=""):
    return "-" if value is None else f"{value:{spec}}{unit}"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model_dir", required=True)
    p.add_argument("--modes", default="float32,fp16,int8,int8_minmax",
                   help="tflite/convert.py modes; int8 = --quantize (percentile ranges), "
                        "int8_minmax = --quantize --ranges minmax")
    p.add_argument("--clips", type=int, default=4)
    p.add_argument("--max_frames", type=int, default=862)
    p.add_argument("--work_dir", default=None, help="where the .tflite files go (temp dir)")
    p.add_argument("--out", default=None, help="JSON results")
    p.add_argument("--layers", action="store_true", help="per-layer int8 error report")
    p.add_argument("--png", default=None, help="folder for spectrogram PNGs")
    p.add_argument("--png_clips", type=int, default=2)
    args = p.parse_args(argv)

    import tensorflow as tf
    from tf_melgan.audio import load_audio, log_mel_numpy
    from tf_melgan.checkpoint import load_generator
    from tf_melgan.deploy.convert import DEFAULT_RANGES, convert, ranges
    from tf_melgan.deploy.convert.data import (calibration_mels, data_splits,
                                               resolve_data_path)
    from tf_melgan.deploy.convert.quantize import convert_saved_model
    from tf_melgan.deploy.graph import write_litert_saved_model
    from tf_melgan.deploy.litert import snr_db
    from tf_melgan.deploy.manifest import INPUT_NAME
    from tf_melgan.deploy.vocoder import load_vocoder
    from tf_melgan.metrics import pitch, speech_scores

    generator, config = load_generator(args.model_dir, which="best", fold=True)
    ac = config.audio
    if ac.mel_preset != "melgan" or ac.stats_path:
        sys.exit("quality.py handles the melgan mel preset without stats only")
    data = resolve_data_path(config.data.path, args.model_dir)
    train_files, held_out = data_splits(config, data)
    work = args.work_dir or tempfile.mkdtemp(prefix="quality_")
    os.makedirs(work, exist_ok=True)

    models = {}
    for mode in [m for m in args.modes.split(",") if m != "float32"] + ["float32"]:
        path = os.path.join(work, f"vocoder_{mode}.tflite")
        if not os.path.exists(path):
            t = time.time()
            if mode == "int8_minmax":
                convert(args.model_dir, path, "int8", ranges="minmax")
            else:
                convert(args.model_dir, path, mode)
            print(f"converted {mode} in {time.time() - t:.0f} s", flush=True)
        models[mode] = load_vocoder(path, num_threads=2)
    calib = None
    if args.layers and "int8" in models:
        calib = calibration_mels(train_files, ac, 32, 256, False,
                                 (config.data.gain_min, config.data.gain_max))
        saved = os.path.join(tempfile.mkdtemp(prefix="quality_layers_"), "saved_model")
        write_litert_saved_model(generator, saved, ac.n_mels)
        representative = lambda: ({INPUT_NAME: m} for m in calib)  # noqa: E731

        def percentile_ranges(calibrated):
            return ranges.percentile_ranges(calibrated, calib, ranges.parse(DEFAULT_RANGES))

        for name, layers in FLOAT_VARIANTS.items():
            path = os.path.join(work, f"vocoder_{name}.tflite")
            with open(path, "wb") as f:
                f.write(convert_saved_model(saved, "int8", representative,
                                            float_layers=layers,
                                            activation_ranges=percentile_ranges))
            models[name] = load_vocoder(path, num_threads=2)

    hop, sr = ac.hop_length, ac.sample_rate
    per = {name: [] for name in ["keras"] + [f"tflite_{m}" for m in models] + ["griffin_lim"]}
    clips = []
    for path in held_out[:args.clips]:
        audio = load_audio(path, sr, ac.peak)
        frames = min(args.max_frames, len(audio) // hop)
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
                **speech_scores(audio, out, sr, hop, ref_pitch)})
        if args.png and len(clips) <= args.png_clips:
            spectrogram_png({"truth": audio, **outs}, sr,
                            os.path.join(args.png, f"{os.path.splitext(clips[-1]['clip'])[0]}.png"))
        print(f"  {os.path.basename(path)}: {frames} frames", flush=True)

    summary = {}
    for name, rows in per.items():
        s = {}
        for key in rows[0]:
            vals = [r[key] for r in rows if r[key] is not None]
            s[key] = float(np.mean(vals)) if vals else None
        summary[name] = s
    float_l1 = summary["keras"]["log_mel_l1"]
    print(f"\n{len(clips)} held-out clips of {data}; log-mel L1 to the ground truth "
          f"(all frames / speech frames), SNR, pitch (pyin):")
    print("| variant | log-mel L1 | vs float | L1 speech frames | L1 pauses | "
          "L1 bins within 60 dB | level in pauses | SNR vs Keras | SNR vs truth | "
          "voicing agree | F0 err (cents) | PESQ-wb | STOI | frame comb |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, s in summary.items():
        snr_k = _fmt(s["snr_vs_keras_db"], ".1f", " dB")
        f0 = _fmt(s["f0_error_cents"], ".0f")
        print(f"| {name} | {s['log_mel_l1']:.3f} | "
              f"{100 * (s['log_mel_l1'] / float_l1 - 1):+.1f}% | "
              f"{s['log_mel_l1_speech']:.3f} | {_fmt(s['log_mel_l1_pauses'], '.3f')} | "
              f"{s['log_mel_l1_60db']:.3f} | {_fmt(s['pause_rms_dbfs'], '.1f', ' dBFS')} | "
              f"{snr_k} | "
              f"{s['snr_vs_truth_db']:.1f} dB | {s['voicing']:.3f} | {f0} | "
              f"{s['pesq_wb']:.2f} | {s['stoi']:.3f} | {s['frame_comb_db']:.1f} dB |")
    result = {"model_dir": os.path.abspath(args.model_dir), "data": data, "clips": clips,
              "per_clip": per, "summary": summary}
    if calib is not None:
        worst, n = layer_report(saved, calib)
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
