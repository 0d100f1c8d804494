#!/usr/bin/env python
"""Quantization-aware generators against LiteRT, on held-out clips (tf_melgan.qat):

    python -m benchmarks.qat --model_dir QAT_DIR [--calibrate] [--baseline ljspeech]
                             [--clips 8] [--seconds 3] [--work_dir DIR]

QAT_DIR is a model dir with qat_ranges.json (a `training.qat: true` run). `--calibrate`
first writes QAT_DIR/qat_ranges.json by calibrating its float generator in Keras on the
converter's calibration set (tf_melgan.deploy.convert.data.calibration_mels, same seed): the
simulation with no fine-tuning. Then QAT_DIR is converted (`--quantize`: with its QAT
ranges) and, on the first `--clips` held-out clips (first `--seconds` each), reported:
its Keras float and fake-quant outputs and the QAT int8 .tflite, with the SNR between the
Keras fake-quant output and the .tflite (how exactly the simulation is what LiteRT runs);
with `--baseline DIR`, also DIR's Keras float and the int8 of those float weights with
percentile ranges (`--ranges` default: on a DIR with a QAT DIR/int8, such as `ljspeech`,
`--quantize` alone would convert that instead).
"""

from __future__ import annotations

import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

KEYS = ("log_mel_l1", "voicing", "f0_error_cents", "pesq_wb", "stoi")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model_dir", required=True)
    p.add_argument("--calibrate", action="store_true")
    p.add_argument("--baseline", default=None)
    p.add_argument("--clips", type=int, default=8)
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--work_dir", default=None)
    args = p.parse_args(argv)

    import tempfile

    from benchmarks.curve import evaluate, held_out_clips
    from tf_melgan import qat
    from tf_melgan.checkpoint import load_generator
    from tf_melgan.deploy.convert import DEFAULT_RANGES, convert
    from tf_melgan.deploy.convert.data import calibration_mels, data_splits, resolve_data_path
    from tf_melgan.deploy.litert import snr_db
    from tf_melgan.deploy.vocoder import keras_vocoder, load_vocoder

    from tf_melgan.pretrained import resolve
    args.model_dir = resolve(args.model_dir)  # a shipped vocoder's name: its folder
    if args.baseline:
        args.baseline = resolve(args.baseline)
    work = args.work_dir or tempfile.mkdtemp(prefix="qat_")
    os.makedirs(work, exist_ok=True)
    if args.calibrate:
        generator, config = load_generator(args.model_dir, fold=False, quantize=True)
        train, _ = data_splits(config, resolve_data_path(config.data.path, args.model_dir))
        mels = calibration_mels(train, config.audio, 32, 256, False,
                                (config.data.gain_min, config.data.gain_max), 0)
        qat.calibrate(generator, mels)
        print("wrote", qat.save_ranges(generator, args.model_dir,
                                       {"calibration": "benchmarks/qat.py --calibrate"}))
    fake_quant, config = qat.load_quantized(args.model_dir)
    if fake_quant is None:
        sys.exit(f"{args.model_dir} has no {qat.RANGES_FILE}: pass --calibrate")
    float_g, _ = load_generator(args.model_dir)
    clips = held_out_clips(config, args.model_dir, args.clips, args.seconds)

    def keras(g):
        return keras_vocoder(g, config)

    variants = {}
    if args.baseline:
        base, _ = load_generator(args.baseline)
        path = os.path.join(work, "baseline_int8.tflite")
        if not os.path.exists(path):
            convert(args.baseline, path, "int8", ranges=DEFAULT_RANGES)
        variants["baseline Keras float"] = keras(base)
        variants["baseline LiteRT int8 (percentile)"] = load_vocoder(path, num_threads=2)
    path = os.path.join(work, "qat_int8.tflite")
    if not os.path.exists(path):
        convert(args.model_dir, path, "int8")
    litert = load_vocoder(path, num_threads=2)
    variants.update({"Keras float": keras(float_g), "Keras fake-quant": keras(fake_quant),
                     "LiteRT int8 (QAT ranges)": litert})

    from tf_melgan.audio import log_mel_numpy
    snrs = [snr_db(keras(fake_quant)(m), litert(m)) for m in
            (log_mel_numpy(c, config.audio)[None].astype(np.float32) for c in clips)]
    print(f"\n{len(clips)} held-out clips x {args.seconds:g} s")
    print("| variant | " + " | ".join(KEYS) + " |")
    print("|---|" + "---|" * len(KEYS))
    for name, vocode in variants.items():
        s = evaluate(vocode, clips, config.audio)
        print(f"| {name} | " + " | ".join("-" if s.get(k) is None else f"{s[k]:.3f}"
                                           for k in KEYS) + " |", flush=True)
    print(f"SNR Keras fake-quant vs LiteRT int8 (QAT ranges): mean {np.mean(snrs):.1f} dB, "
          f"per clip {min(snrs):.1f}..{max(snrs):.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
