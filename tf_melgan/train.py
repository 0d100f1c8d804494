"""Training CLI: python -m tf_melgan.train --config configs/base.yaml --model_dir DIR.

Resumes from the latest checkpoint in DIR, saves on Ctrl-C / SIGTERM, keeps the generator
with the best validation log-mel L1 (the loop: tf_melgan.trainer.run). On the console: a
progress bar in a terminal, one plain line every --log_every steps when stdout is a file or
a pipe (nohup, SLURM), a line per validation; at the end a summary (best step and score,
where everything is) with the commands to run next.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys

from tf_melgan.cli import (DEBUG_HELP, console_logging, debug_requested, exit_now, new_flags,
                           parse_flags, python_command, quiet_tensorflow)
from tf_melgan.config import ConfigError, load_config
from tf_melgan.distribute import make_strategy
from tf_melgan.errors import TfMelganError
from tf_melgan.progress import format_duration

PROGRESS_HELP = ("auto: a progress bar when stdout is a terminal, else one plain line every "
                 "--log_every steps (nohup, SLURM, a file); bar / lines: force either.")
log = logging.getLogger("tf_melgan")
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # for tflite/convert.py


def _define_flags():
    from absl import flags

    fv = new_flags()
    flags.DEFINE_string("config", None, "YAML config; defaults to MODEL_DIR/config.yaml when "
                        "resuming.", flag_values=fv)
    flags.DEFINE_string("model_dir", None, "Checkpoints, logs, samples and the resolved config.",
                        flag_values=fv)
    flags.DEFINE_string("data", None, "Audio folder (LJ Speech layout or any folder); sets "
                        "data.path.", flag_values=fv)
    flags.DEFINE_multi_string("set", [], "Config override section.key=value, repeatable.",
                              flag_values=fv)
    flags.DEFINE_enum("strategy", "auto", ["auto", "default", "mirrored", "multi_worker"],
                      "auto: MirroredStrategy on GPUs, MultiWorkerMirroredStrategy when "
                      "TF_CONFIG names several workers, else the default strategy.",
                      flag_values=fv)
    flags.DEFINE_integer("cpu_replicas", 0, "Split the CPU into this many logical devices and "
                         "mirror over them (testing distribution without GPUs).", flag_values=fv)
    flags.DEFINE_string("init_from", None, "Another model dir (e.g. from "
                        "tf_melgan.import_pytorch): when MODEL_DIR has no checkpoint yet, start "
                        "G and D from its latest checkpoint; optimizers and step start fresh, "
                        "MODEL_DIR's config rules.", flag_values=fv)
    flags.DEFINE_enum("progress", "auto", ["auto", "bar", "lines"], PROGRESS_HELP,
                      flag_values=fv)
    flags.DEFINE_integer("log_every", 50, "With plain-line progress: a line every this many "
                         "steps.", lower_bound=1, flag_values=fv)
    flags.DEFINE_integer("verbose", 1, "0: no progress output (log lines, warnings and the "
                         "final summary still print); 1: progress as --progress says; 2: "
                         "plain lines (as --progress lines).", lower_bound=0, upper_bound=2,
                         flag_values=fv)
    flags.DEFINE_boolean("debug", False, DEBUG_HELP, flag_values=fv)
    return fv


def summary_text(summary: dict, python: str | None = None) -> str:
    """What a finished (or stopped) run says: steps run, the best step and its validation
    log-mel L1, where the model, samples and logs are, and the commands to run next."""
    python = python or python_command()
    d, step, total = summary["model_dir"], summary["step"], summary["steps"]
    ran = f"{step - summary['start_step']} steps in {_duration(summary['seconds'])}"
    if summary["start_step"]:
        ran += f", resumed at step {summary['start_step']}"
    if summary["interrupted"]:
        lines = [f"training stopped at step {step} of {total} by {summary['interrupted']} "
                 f"({ran}); rerun the same command to resume"]
    else:
        lines = [f"training {'finished' if step >= total else 'stopped'} at step {step} of "
                 f"{total} ({ran})"]
    best = summary.get("best")
    if best:
        note = " (NOT held out: validated on the training audio)" \
            if summary.get("not_held_out") else ""
        lines.append(f"  best:       step {best['step']}, validation log-mel L1 "
                     f"{best['val_mel_l1']:.4f}{note} -> {best['path']}")
    else:
        lines.append(f"  best:       none yet (validation runs every "
                     f"{summary['steps_per_epoch']} steps)")
    lines.append(f"  checkpoint: {summary['checkpoint']}")
    if summary.get("samples"):
        lines.append(f"  samples:    {summary['samples']} ({summary['reference_sample']}: "
                     f"the held-out clip; step_*.wav: the generator's)")
    if summary.get("logs"):
        lines.append(f"  logs:       {summary['logs']}")
    convert = os.path.relpath(os.path.join(REPO_ROOT, "tflite", "convert.py"))
    if not os.path.isfile(convert):  # an installed package: no repo around it
        convert = "-m tf_melgan.convert"
    clip = summary["held_out"][0] if summary.get("held_out") else "CLIP.wav"
    stem = os.path.splitext(os.path.basename(clip))[0]
    tensorboard = os.path.join(os.path.dirname(python), "tensorboard")
    tensorboard = tensorboard if os.path.isfile(tensorboard) else "tensorboard"
    lines += ["next:",
              f"  {python} -m tf_melgan.export --model_dir {d} --output {d}/saved_model",
              f"  {python} {convert} --model_dir {d} --output {d}/vocoder.tflite",
              f"  {python} -m tf_melgan.synthesize --model {d} --input {clip} "
              f"--output {d}/{stem}.wav",
              f"  {tensorboard} --logdir {summary['logs'] or os.path.join(d, 'logs')}"]
    return "\n".join(lines)


def _duration(seconds: float) -> str:
    return format_duration(seconds)


def main(argv) -> int:
    """Runs the training CLI on argv (argv[0] is the program); returns the exit status:
    0, 1 (a one-line config / data error), 2 (usage) or 143 (stopped by SIGTERM / Ctrl-C,
    after saving)."""
    fv = _define_flags()
    status = parse_flags(fv, argv, __doc__, required=("model_dir",))
    if status is not None:
        return status
    config_path = fv.config
    if config_path is None:
        config_path = os.path.join(fv.model_dir, "config.yaml")
        if not os.path.isfile(config_path):
            print("error: --config is required for a new model_dir", file=sys.stderr)
            return 2
    debug = debug_requested(fv.debug)
    quiet_tensorflow(debug)
    if not debug:
        logging.getLogger("absl").setLevel(logging.WARNING)  # TF's per-save "Sharding callback"
    with console_logging(timestamps=True):
        return _run_from_flags(fv, config_path, debug)


def _run_from_flags(fv, config_path, debug) -> int:
    try:
        config = load_config(config_path, fv.set)
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        return 1
    if fv.data:  # set directly: a path is not YAML ('#' would start a comment)
        config.data.path = fv.data
    strategy = make_strategy(fv.strategy, fv.cpu_replicas)
    # TensorFlow loads with these: after quiet_tensorflow(), and never for --help
    from tf_melgan import checkpoint, data, trainer
    try:
        summary = trainer.run(config, fv.model_dir, strategy, fv.verbose, fv.init_from,
                              progress=fv.progress, log_every=fv.log_every)
    except TfMelganError as e:  # run()'s one-line refusals
        prefix = {data.DataError: "data error", checkpoint.ModelDirError: "--init_from",
                  ConfigError: "config error"}.get(type(e), "error")
        print(f"{prefix}: {e}", file=sys.stderr)
        return 1
    if summary["chief"]:
        print(summary_text(summary), flush=True)
    else:
        log.info("worker stopped at step %d", summary["step"])
    return 128 + signal.SIGTERM if summary["interrupted"] else 0


def _single_process() -> bool:
    cluster = json.loads(os.environ.get("TF_CONFIG", "{}")).get("cluster", {})
    return sum(len(tasks) for tasks in cluster.values()) <= 1


def cli():
    try:
        status = main(sys.argv)
    except KeyboardInterrupt:  # a second Ctrl-C: GracefulStop let it through
        if debug_requested():
            raise
        print("interrupted: stopped without saving", file=sys.stderr)
        status = 130
    if _single_process():
        # Everything is saved and closed: skip the interpreter's teardown, which spends
        # seconds to minutes garbage-collecting what Keras and TensorFlow leave
        # (docs/BENCHMARKS.md, "Measured in the code's comments"). Multi-worker runs exit
        # normally: TF's cluster shutdown runs then.
        exit_now(status)
    sys.exit(status)


if __name__ == "__main__":
    cli()
