"""Per-band log-mel statistics for `audio.stats_path`.

    python -m tf_melgan.preprocess --config C --data PATH --output stats.npy [--set k=v ...]

Computes the mean and standard deviation of every mel band over the training split (the
clips `train` trains on: the same file discovery and held-out split), with the NumPy log-mel
of the config's preset, on clips loaded as training loads them (resampled, peak-normalised,
without the random training gain). All frames of every clip count (with the 'center'
padding, the extra last frame too). Writes float32 [2, n_mels]: row 0 the means, row 1 the
standard deviations (population, ddof 0) -- the layout of ParallelWaveGAN's / TensorFlowTTS'
`compute_statistics` stats.npy, so their files can be used and ours read by them. A band
with zero variance gets std 1 (as scikit-learn's StandardScaler). Then set
`audio.stats_path` to the file: the mel becomes (log_mel - mean) / std, and `train` copies
the file into MODEL_DIR/mel_stats.npy so it travels with the model.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys

import numpy as np

from tf_melgan.cli import (DEBUG_HELP, console_logging, debug_requested, new_flags,
                           parse_flags, quiet_tensorflow)
from tf_melgan.config import AudioConfig, Config, ConfigError, load_config

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
    from tf_melgan.audio import AudioError, load_audio, log_mel_numpy
    from tf_melgan.data import DataError
    from tf_melgan.progress import Progress

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
    from tf_melgan.data import find_audio_files, split_files

    files = find_audio_files(data_path or config.data.path)
    train_files, _ = split_files(files, config.data.validation_clips, config.data.holdout)
    return compute_stats(train_files, config.audio, verbose)


def store_mel_stats(config: Config, model_dir: str) -> Config:
    """Copies audio.stats_path into MODEL_DIR/mel_stats.npy (when set) and returns the
    config to write as MODEL_DIR/config.yaml: a copy pointing at `mel_stats.npy`, which
    `load_config` resolves relative to the model dir. `config` itself is not changed."""
    import copy

    src = config.audio.stats_path
    if not src:
        return config
    dst = os.path.join(model_dir, MODEL_STATS)
    same = os.path.exists(dst) and os.path.samefile(src, dst)
    if not same:
        if os.path.exists(dst) and not np.array_equal(np.load(dst), np.load(src)):
            log.warning("replacing %s with the different statistics of %s: checkpoints "
                        "already in %s were trained with the old ones", dst, src, model_dir)
        from tf_melgan.atomic import replacing
        with replacing(dst, os.path.getsize(src)) as tmp:
            shutil.copyfile(src, tmp)
    saved = copy.deepcopy(config)
    saved.audio.stats_path = MODEL_STATS
    return saved


def _define_flags():
    from absl import flags

    fv = new_flags()
    flags.DEFINE_string("config", None, "YAML config (default: the built-in defaults).",
                        flag_values=fv)
    flags.DEFINE_string("data", None, "Audio folder (default: the config's data.path).",
                        flag_values=fv)
    flags.DEFINE_string("output", None, "Where to write the .npy file.", flag_values=fv)
    flags.DEFINE_multi_string("set", [], "Config override section.key=value, repeatable.",
                              flag_values=fv)
    flags.DEFINE_boolean("quiet", False, "No progress output.", flag_values=fv)
    flags.DEFINE_boolean("debug", False, DEBUG_HELP, flag_values=fv)
    return fv


def main(argv) -> int:
    """Runs the CLI on argv (argv[0] is the program); returns the exit status."""
    fv = _define_flags()
    status = parse_flags(fv, argv, __doc__, required=("output",))
    if status is not None:
        return status
    quiet_tensorflow(debug_requested(fv.debug))
    with console_logging():
        return _run(fv)


def cli():
    sys.exit(main(sys.argv))


def _run(args) -> int:
    from tf_melgan.data import DataError

    try:
        # The statistics are of the raw log-mel: whatever stats_path the config names
        # (perhaps this very output, not written yet) is not read.
        config = load_config(args.config, list(args.set) + ["audio.stats_path=null"])
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        return 1
    try:
        stats, summary = stats_for_config(config, args.data, verbose=not args.quiet)
    except DataError as e:
        print(f"data error: {e}", file=sys.stderr)
        return 1
    out_dir = os.path.dirname(os.path.abspath(args.output))
    os.makedirs(out_dir, exist_ok=True)
    with open(args.output, "wb") as f:
        np.save(f, stats.astype(np.float32), allow_pickle=False)
    a = config.audio
    log.info("%s: mean / std of %d %s mel bands over %d frames of %d training clips "
             "(%d skipped); mean %.3f .. %.3f, std %.3f .. %.3f", args.output, a.n_mels,
             a.mel_preset, summary["frames"], summary["clips"], summary["skipped"],
             stats[0].min(), stats[0].max(), stats[1].min(), stats[1].max())
    log.info("use it with: --set audio.stats_path=%s (or audio: {stats_path: ...} in the "
             "config; relative to the config file's directory)", args.output)
    return 0


if __name__ == "__main__":
    cli()
