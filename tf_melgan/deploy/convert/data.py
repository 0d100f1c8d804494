"""The converter's data: real log-mels of the model's own clips, for int8 calibration (the
training split) and for checking the .tflite against the Keras model (the held-out split)."""

from __future__ import annotations

import os
import time

import numpy as np

from tf_melgan.audio import AudioError, load_audio, log_mel_numpy
from tf_melgan.data import crop_or_pad, find_audio_files, split_files
from tf_melgan.deploy.convert.errors import ConversionError, log
from tf_melgan.progress import Progress

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))


def with_progress(representative, total: int, label: str):
    """`representative` (a callable yielding calibration inputs) reporting its progress:
    the converter runs the model on each input, tens of seconds for --quantize."""
    def items():

        progress = Progress(total, label, "segment", seconds=10)
        done = 0
        for done, item in enumerate(representative(), 1):
            yield item
            progress.update(done)
        progress.close(f"{label} {done} segments in {time.monotonic() - progress.started:.0f} s")
    return items


def resolve_data_path(path, model_dir: str):
    """A config's data.path may be relative to where training ran: try the cwd, the model
    dir and the repo root. A list of paths: each resolved."""
    if isinstance(path, (list, tuple)) and path:
        return [resolve_data_path(p, model_dir) for p in path]
    if not path:
        raise ConversionError("the model's config has no data.path: pass --data")
    candidates = [path] if os.path.isabs(path) else [
        path, os.path.join(model_dir, path), os.path.join(REPO_ROOT, path)]
    for c in candidates:
        if os.path.exists(c):
            return c
    raise ConversionError(f"data path {path} (config data.path) not found (tried "
                          f"{', '.join(candidates)}): pass --data")


def data_splits(config, data_path: str):
    return split_files(find_audio_files(data_path), config.data.validation_clips,
                       config.data.holdout)


def _load(path, audio_config):
    try:
        return load_audio(path, audio_config.sample_rate, audio_config.peak)
    except AudioError as e:
        log(f"  skipping {e}")
        return None


def calibration_mels(files, audio_config, count, frames, fixed, gain_range, seed=0):
    """`count` log-mels [1, frames, n_mels] of random segments of random files, at random
    gains in the training range (the inputs the model was trained on). With `fixed`, every
    segment has exactly `frames` frames (short clips padded with silence); otherwise
    min(frames, clip length)."""
    hop = audio_config.hop_length
    rng = np.random.default_rng(seed)
    order = [files[i] for i in rng.permutation(len(files))]
    clips, mels, tried = {}, [], 0
    while len(mels) < count and tried < count + len(order):
        path = order[tried % len(order)]
        tried += 1
        if path not in clips:
            clips[path] = _load(path, audio_config)
        audio = clips[path]
        if audio is None or len(audio) < hop:
            continue
        length = frames * hop if fixed else min(frames, len(audio) // hop) * hop
        offset = int(rng.integers(0, max(1, len(audio) - length + 1)))
        segment = crop_or_pad(audio, length, offset) * rng.uniform(*gain_range)
        mels.append(log_mel_numpy(segment, audio_config)[None].astype(np.float32))
    if not mels:
        raise ConversionError("no usable calibration audio")
    return mels


def validation_mels(files, audio_config, count, max_frames, fixed_frames):
    """Log-mels [1, frames, n_mels] of the first `count` held-out clips: their first
    `max_frames` frames, or exactly `fixed_frames` (padded with silence)."""
    hop, mels, names = audio_config.hop_length, [], []
    for path in files:
        if len(mels) == count:
            break
        audio = _load(path, audio_config)
        if audio is None:
            continue
        if fixed_frames:
            audio = crop_or_pad(audio, fixed_frames * hop)
        else:
            audio = audio[:min(max_frames, len(audio) // hop) * hop]
            if len(audio) < 8 * hop:
                continue
        mels.append(log_mel_numpy(audio, audio_config)[None].astype(np.float32))
        names.append(os.path.basename(path))
    if not mels:
        raise ConversionError("no usable held-out clip for validation")
    return mels, names
