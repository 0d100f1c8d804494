#!/usr/bin/env python
"""One point of a training run's learning curve, on its held-out clips:

    python -m benchmarks.curve --model_dir runs/ljspeech_cpu [--which latest] [--clips 16]
                               [--seconds 3] [--dnsmos] [--out docs/curves/ljspeech_cpu.csv]

Loads the generator (latest checkpoint by default), vocodes the first `--seconds` of each
held-out clip of the model's data split (the clips training never saw) from their log-mels,
and prints / appends one row: step, training hours (summed from the run's TensorBoard
steps/s, so pauses and resumes do not count), validation log-mel L1 and the speech figures
of tf_melgan.metrics (voicing, F0 error, PESQ-wb, STOI, frame comb), averaged over clips.
`--griffin_lim` prints the same figures for Griffin-Lim (32 iterations) from the same mels;
`--dnsmos` adds DNSMOS (tf_melgan.metrics.dnsmos) and prints the recordings' own.
A run started with `--init_from` another run's generator counts its steps and hours from
zero: `--init_step S --init_hours H` (that generator's) put its rows on the other's axes.
`--data DIR` scores clips of another corpus instead (the first --clips of DIR by the clip
split's hash order, resampled to the model's rate): voices the model never heard, e.g.
LJ Speech for a LibriSpeech model.
"""

from __future__ import annotations

import argparse
import csv
import glob
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

COLUMNS = ["step", "train_hours", "log_mel_l1", "voicing", "f0_error_cents", "pesq_wb",
           "stoi", "frame_comb_db", "dnsmos_ovrl", "dnsmos_sig", "dnsmos_bak", "dnsmos_p808"]


def training_hours(model_dir: str, up_to_step: int) -> float:
    """Seconds of training up to `up_to_step`, from the train/steps_per_sec scalars (one per
    50 steps) of MODEL_DIR/logs, in hours. Steps logged twice (a resume) count once."""
    import tensorflow as tf
    from tensorboard.compat.proto.event_pb2 import Event
    rates = {}
    for path in sorted(glob.glob(os.path.join(model_dir, "logs", "events.out.tfevents.*"))):
        for record in tf.data.TFRecordDataset(path):
            event = Event.FromString(record.numpy())
            for value in event.summary.value:
                if value.tag == "train/steps_per_sec" and event.step <= up_to_step:
                    rates[event.step] = float(tf.make_ndarray(value.tensor))
    steps = sorted(rates)
    seconds = sum((s - p) / rates[s] for p, s in zip([0] + steps[:-1], steps))
    return seconds / 3600.0


def held_out_clips(config, model_dir, n, seconds):
    from tf_melgan.audio import load_audio
    from tf_melgan.deploy.convert.data import data_splits, resolve_data_path
    data = resolve_data_path(config.data.path, model_dir)
    _, held_out = data_splits(config, data)
    ac = config.audio
    length = int(seconds * ac.sample_rate) // ac.hop_length * ac.hop_length
    clips = []
    for path in held_out[:n]:
        audio = load_audio(path, ac.sample_rate, ac.peak)
        clips.append(audio[:min(length, len(audio) // ac.hop_length * ac.hop_length)])
    return clips


def recordings_mos(clips, sample_rate: int) -> dict:
    """Mean DNSMOS figures of the clips themselves (the recordings' row)."""
    from tf_melgan.metrics import dnsmos
    rows = [dnsmos(a, sample_rate) for a in clips]
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}


def evaluate(vocode, clips, audio_config, pesq_stoi=True, mos=False):
    """Mean figures of `vocode(mel [1, frames, n_mels]) -> waveform` over `clips`."""
    from tf_melgan.audio import log_mel_numpy
    from tf_melgan.metrics import log_mel_l1, pitch, speech_scores
    sr, hop = audio_config.sample_rate, audio_config.hop_length
    rows = []
    for audio in clips:
        mel = log_mel_numpy(audio, audio_config).astype(np.float32)
        out = np.asarray(vocode(mel[None]))[0][:len(audio)]
        row = speech_scores(audio, out, sr, hop, pitch(audio, sr, hop), pesq_stoi, mos)
        row["log_mel_l1"] = log_mel_l1(mel, out, audio_config)
        rows.append(row)
    mean = {}
    for key in rows[0]:
        values = [r[key] for r in rows if r[key] is not None]
        mean[key] = float(np.mean(values)) if values else None
    return mean


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model_dir", required=True)
    p.add_argument("--which", default="latest", choices=["latest", "best"])
    p.add_argument("--clips", type=int, default=16)
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--no_pesq", action="store_true", help="skip PESQ and STOI (faster)")
    p.add_argument("--griffin_lim", action="store_true")
    p.add_argument("--dnsmos", action="store_true",
                   help="add DNSMOS (speechmos + onnxruntime), and the recordings' own")
    p.add_argument("--data", default=None,
                   help="score clips of this folder (another corpus) instead of the held-out ones")
    p.add_argument("--out", default=None, help="CSV to append the row to")
    p.add_argument("--init_step", type=int, default=0,
                   help="added to the step: the --init_from generator's")
    p.add_argument("--init_hours", type=float, default=0.0,
                   help="added to the training hours: the --init_from generator's")
    args = p.parse_args(argv)

    import tensorflow as tf
    from tf_melgan.checkpoint import generator_source, load_generator
    from tf_melgan.pretrained import resolve
    args.model_dir = resolve(args.model_dir)  # a shipped vocoder's name: its folder
    generator, config = load_generator(args.model_dir, which=args.which, fold=True)
    step = generator_source(args.model_dir, args.which).step
    if args.data:  # every clip of another corpus is unseen: the clip split's order
        config.data.path, config.data.holdout = args.data, "clip"
        config.data.validation_clips = args.clips
    clips = held_out_clips(config, args.model_dir, args.clips, args.seconds)
    row = {"step": args.init_step + step,
           "train_hours": args.init_hours + training_hours(args.model_dir, step),
           **evaluate(lambda m: generator(tf.constant(m), training=False), clips,
                      config.audio, not args.no_pesq, args.dnsmos)}
    print(", ".join(f"{k} {row.get(k)}" if not isinstance(row.get(k), float)
                    else f"{k} {row[k]:.3f}" for k in COLUMNS), flush=True)
    if args.griffin_lim:
        from benchmarks._speech import griffin_lim
        gl = evaluate(lambda m: griffin_lim(m[0], config.audio)[None], clips, config.audio,
                      not args.no_pesq, args.dnsmos)
        print("griffin-lim: " + ", ".join(f"{k} {gl[k]:.3f}" for k in COLUMNS[2:]
                                          if gl.get(k) is not None), flush=True)
    if args.dnsmos:
        rec = recordings_mos(clips, config.audio.sample_rate)
        print("recordings: " + ", ".join(f"{k} {v:.3f}" for k, v in rec.items()), flush=True)
    if args.out:
        new = not os.path.isfile(args.out)
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow({k: (f"{v:.4f}" if isinstance(v, float) else v)
                             for k, v in row.items()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
