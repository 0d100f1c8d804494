"""Per-band log-mel statistics (the API of `python -m tf_melgan.preprocess`, whose doc gives
the recipe and the file's layout): computed over a config's training split, and carried
into a model dir as MODEL_DIR/mel_stats.npy."""

from __future__ import annotations

import copy
import logging
import os
import shutil

import numpy as np

from tf_melgan.atomic import replacing
from tf_melgan.audio import AudioError, load_audio, log_mel_numpy
from tf_melgan.config import AudioConfig, Config
from tf_melgan.data import DataError, find_audio_files, split_files
from tf_melgan.progress import Progress

log = logging.getLogger("tf_melgan")

MODEL_STATS = "mel_stats.npy"  # the name of the statistics in a model dir


class _Moments:
    """Per-band count, mean and sum of squared deviations, merged clip by clip (Chan et al.),
    in float64."""

    def __init__(self, n_mels: int):
        self.count, self.mean, self.m2 = 0, np.zeros(n_mels), np.zeros(n_mels)

    def add(self, mel: np.ndarray) -> None:
        mel = np.asarray(mel, np.float64).reshape(-1, self.mean.shape[0])
        n = mel.shape[0]
        if n == 0:
            return
        mean = mel.mean(axis=0)
        m2 = ((mel - mean) ** 2).sum(axis=0)
        total = self.count + n
        delta = mean - self.mean
        self.mean = self.mean + delta * (n / total)
        self.m2 = self.m2 + m2 + delta ** 2 * (self.count * n / total)
        self.count = total

    def stats(self) -> np.ndarray:
        std = np.sqrt(self.m2 / max(self.count, 1))
        return np.stack([self.mean, np.where(std > 0, std, 1.0)])


def compute_stats(files, audio: AudioConfig, verbose: bool = True) -> tuple[np.ndarray, dict]:
    """(stats [2, n_mels] float64, summary) over `files`; unusable files are skipped with a
    warning. Raises DataError when none is usable."""
    moments, skipped = _Moments(audio.n_mels), []
    bar = Progress(len(files), "log-mel statistics:", "clip", seconds=30) if verbose else None
    for i, path in enumerate(files):
        try:
            clip = load_audio(path, audio.sample_rate, audio.peak)
            if clip.shape[0] <= audio.n_fft // 2:  # too short for the reflection padding
                raise AudioError(f"{path}: shorter than n_fft / 2 ({clip.shape[0]} samples)")
            moments.add(log_mel_numpy(clip, audio, full=True, normalize=False))
        except AudioError as e:
            skipped.append(str(e))
        if bar is not None:
            bar.update(i + 1)
    if bar is not None:
        bar.close()
    for message in skipped:
        log.warning("skipping %s", message)
    if moments.count == 0:
        raise DataError("no usable audio files:\n  " + "\n  ".join(skipped or ["(none given)"]))
    summary = {"clips": len(files) - len(skipped), "skipped": len(skipped),
               "frames": moments.count}
    return moments.stats(), summary


def stats_for_config(config: Config, data_path: str | None = None, verbose: bool = True):
    """Statistics over the training split of `data_path` (default config.data.path)."""
    files = find_audio_files(data_path or config.data.path)
    train_files, _ = split_files(files, config.data.validation_clips, config.data.holdout)
    return compute_stats(train_files, config.audio, verbose)


def store_mel_stats(config: Config, model_dir: str) -> Config:
    """Copies audio.stats_path into MODEL_DIR/mel_stats.npy (when set) and returns the
    config to write as MODEL_DIR/config.yaml: a copy pointing at `mel_stats.npy`, which
    `load_config` resolves relative to the model dir. `config` itself is not changed."""
    src = config.audio.stats_path
    if not src:
        return config
    dst = os.path.join(model_dir, MODEL_STATS)
    same = os.path.exists(dst) and os.path.samefile(src, dst)
    if not same:
        if os.path.exists(dst) and not np.array_equal(np.load(dst), np.load(src)):
            log.warning("replacing %s with the different statistics of %s: checkpoints "
                        "already in %s were trained with the old ones", dst, src, model_dir)
        with replacing(dst, os.path.getsize(src)) as tmp:
            shutil.copyfile(src, tmp)
    saved = copy.deepcopy(config)
    saved.audio.stats_path = MODEL_STATS
    return saved
