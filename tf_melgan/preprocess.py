"""Per-band log-mel statistics for `audio.stats_path`.

    python -m tf_melgan.preprocess --config C --data PATH --output stats.npy [--set k=v ...]

Computes (tf_melgan.mel_stats) the mean and standard deviation of every mel band over the
training split (the clips `train` trains on: the same file discovery and held-out split),
with the NumPy log-mel of the config's preset, on clips loaded as training loads them
(resampled, peak-normalised, without the random training gain). All frames of every clip count (with the 'center'
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
import sys

import numpy as np

from tf_melgan.cli import (DEBUG_HELP, console_logging, debug_requested, new_flags, parse_flags,
                           quiet_tensorflow)
from tf_melgan.config import ConfigError, load_config

log = logging.getLogger("tf_melgan")

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
    # TensorFlow loads with these: after quiet_tensorflow(), and never for --help
    from tf_melgan import data, mel_stats

    try:
        # The statistics are of the raw log-mel: whatever stats_path the config names
        # (perhaps this very output, not written yet) is not read.
        config = load_config(args.config, list(args.set) + ["audio.stats_path=null"])
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        return 1
    try:
        stats, summary = mel_stats.stats_for_config(config, args.data, verbose=not args.quiet)
    except data.DataError as e:
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
