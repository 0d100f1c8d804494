"""Training CLI: python -m tf_melgan.train --config configs/base.yaml --model_dir DIR.

Resumes from the latest checkpoint in DIR, saves on Ctrl-C / SIGTERM, keeps the generator
with the best validation log-mel L1, logs to TensorBoard (DIR/logs). One training per DIR
(DIR/.lock); stops on a non-finite loss; every file written atomically (README "What
survives what"). On the console: a
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
import time

from tf_melgan.cli import (DEBUG_HELP, console_logging, debug_requested, exit_now, new_flags,
                           parse_flags, python_command, quiet_tensorflow)
from tf_melgan.distribute import is_chief, make_strategy, set_precision
from tf_melgan.resume import check_resume_config, init_checkpoint

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


def run(config, model_dir: str, strategy=None, verbose: int = 1, init_from=None,
        progress: str = "auto", log_every: int = 50) -> dict:
    """Trains (or resumes) in `model_dir` until `config.training.steps`. Returns a summary
    (see summary_text; 'interrupted' is the signal's name or None). verbose 0: no progress
    output; progress: 'auto' (a bar when stdout is a terminal, else a plain line every
    `log_every` steps), 'bar' or 'lines'.

    The chief holds MODEL_DIR/.lock throughout (tf_melgan.lock: a second training on the
    same dir is refused). Nothing is written in the model dir before the data and the
    checkpoint to resume from have loaded."""
    import tensorflow as tf

    from tf_melgan.atomic import describe
    from tf_melgan.callbacks import TrainingError
    from tf_melgan.lock import LOCK_NAME, ModelDirBusy, ModelDirLock

    strategy = strategy or tf.distribute.get_strategy()
    lock = ModelDirLock(model_dir) if is_chief(strategy) else None
    created = not os.path.isdir(model_dir)
    if lock is not None:
        try:
            lock.acquire()
        except ModelDirBusy as e:
            raise TrainingError(str(e)) from None
        except OSError as e:
            raise TrainingError(f"cannot write in the model dir: "
                                f"{describe(e, model_dir)}") from None
    try:
        return _train(config, model_dir, strategy, verbose, init_from, progress,
                      log_every)
    finally:
        if lock is not None:
            lock.release()
            if created and not os.path.exists(os.path.join(model_dir, "config.yaml")):
                try:  # training never started: leave no empty model dir behind
                    os.remove(os.path.join(model_dir, LOCK_NAME))
                    os.rmdir(model_dir)
                except OSError:
                    pass


def _train(config, model_dir: str, strategy, verbose: int, init_from, progress: str,
           log_every: int) -> dict:
    import keras
    import tensorflow as tf

    from tf_melgan.atomic import WriteError, remove_temporaries, write_text
    from tf_melgan.callbacks import (BestGenerator, CheckpointSaver, ConsoleProgress,
                                     GracefulStop, NonFiniteGuard, StopAt, TensorBoardLogger,
                                     TrainingError, save_checkpoint)
    from tf_melgan.cli import one_line
    from tf_melgan.data import (AudioSource, find_audio_files, split_files, train_dataset,
                                validation_audio, validation_dataset, warn_short_clips)
    from tf_melgan.checkpoint import remove_checkpoint_debris, restore_weights
    from tf_melgan.model import MelGAN, make_optimizer

    started = time.monotonic()
    progress = "lines" if verbose > 1 else progress
    t = config.training
    chief = is_chief(strategy)
    replicas = strategy.num_replicas_in_sync
    if t.batch_size % replicas:
        raise SystemExit(f"training.batch_size {t.batch_size} is not divisible by the "
                         f"{replicas} replicas")
    changed = check_resume_config(config, model_dir)  # before anything is written
    if changed:
        log.info("resuming with changed settings: %s", "; ".join(changed))
    init_source = None
    if init_from and tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints")) is None:
        init_source = init_checkpoint(config, init_from)  # fail before loading any data
    elif init_from:
        log.info("--init_from ignored: %s already has a checkpoint", model_dir)
    precision = set_precision(t.mixed_precision)

    files = find_audio_files(config.data.path)
    train_files, val_files = split_files(files, config.data.validation_clips)
    not_held_out = bool(set(val_files) & set(train_files))
    if not_held_out and chief:
        log.warning("NO HELD-OUT AUDIO: %s is the only audio file, so it is trained on AND "
                    "validated on; the validation log-mel L1 and the 'best' generator measure "
                    "memorisation, not quality on unseen speech. Give --data a folder of "
                    "clips (data.validation_clips = %d of them are held out).", files[0],
                    config.data.validation_clips)
    train_source = AudioSource(train_files, config.audio.sample_rate, config.audio.peak,
                               config.data.cache_max_gb, verbose=verbose > 0 and chief,
                               progress=progress)
    val_source = AudioSource(val_files, config.audio.sample_rate, config.audio.peak,
                             config.data.cache_max_gb, verbose=False)
    val_audio = validation_audio(val_source, config.data.eval_segment_length)
    log.info("data: %d training clips (%.0f s), %d held out; %d replica(s), precision %s",
             len(train_source), train_source.seconds(), len(val_source), replicas, precision)
    if chief:
        warn_short_clips(train_source, t.segment_length)

    keras.utils.set_random_seed(t.seed)
    with strategy.scope():
        gan = MelGAN.from_config_dataclass(config)
        fp16 = precision == "mixed_float16"
        try:
            gan.compile(make_optimizer(config.g_optimizer, fp16),
                        make_optimizer(config.d_optimizer, fp16), jit_compile=t.jit_compile)
        except ValueError as e:  # an explicit grouped_conv that cannot run here
            raise SystemExit(f"config error: {e}") from None
        extra = {"period_discriminator": gan.period_discriminator} \
            if gan.period_discriminator is not None else {}
        checkpoint = tf.train.Checkpoint(generator=gan.generator,
                                         discriminator=gan.discriminator,
                                         g_optimizer=gan.g_optimizer,
                                         d_optimizer=gan.d_optimizer, **extra)
    log.info("discriminator grouped convs: %s (discriminator.grouped_conv=%s)",
             gan.grouped_conv, config.discriminator.grouped_conv)
    # Non-chief workers must take part in saving but write to a scratch directory.
    ckpt_dir = os.path.join(model_dir, "checkpoints")
    if not chief:
        ckpt_dir = os.path.join(model_dir, f".worker_{strategy.cluster_resolver.task_id}")
    manager = tf.train.CheckpointManager(checkpoint, ckpt_dir, max_to_keep=t.keep_checkpoints)
    # Every worker resumes from the chief's checkpoints (its own scratch dir is deleted).
    latest = tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints"))
    try:
        if latest:
            checkpoint.restore(latest).expect_partial()
            log.info("resumed from %s", latest)
        elif init_source and init_source.endswith(".h5"):
            gan.generator.load_weights(init_source)
            log.info("initialised the generator from %s; the discriminators start fresh",
                     init_source)
        elif init_source:
            models = {"generator": gan.generator, "discriminator": gan.discriminator}
            if gan.period_discriminator is not None:
                models["period_discriminator"] = gan.period_discriminator
            restore_weights(init_source, **models)
            log.info("initialised generator and discriminator(s) from %s", init_source)
    except (ValueError, OSError, AssertionError, tf.errors.OpError) as e:
        raise TrainingError(f"cannot restore {latest or init_source}: {one_line(e)}") from None
    step = start_step = int(gan.g_optimizer.iterations.numpy())
    if chief:  # training can start: tidy up after killed runs, then record the config
        from tf_melgan.preprocess import store_mel_stats  # MODEL_DIR/mel_stats.npy
        removed = remove_checkpoint_debris(os.path.join(model_dir, "checkpoints"))
        for folder in (model_dir, os.path.join(model_dir, "samples")):
            removed += remove_temporaries(folder)
        if removed:
            log.info("removed %d leftover(s) of interrupted saves: %s", len(removed),
                     ", ".join(os.path.relpath(p, model_dir) for p in removed))
        try:
            write_text(os.path.join(model_dir, "config.yaml"),
                       store_mel_stats(config, model_dir).to_yaml())
        except WriteError as e:
            raise TrainingError(f"cannot write the config: {e}") from None

    if t.qat:
        from tf_melgan import qat
        ranges = qat.load_ranges(model_dir)
        if ranges is None:  # the float model's ranges, calibrated as the converter does
            from tf_melgan.deploy.convert.data import calibration_mels
            mels = calibration_mels(train_files, config.audio, 32, 256, False, (
                config.data.gain_min, config.data.gain_max), seed=t.seed)
            ranges = qat.calibrate(gan.generator, mels)
            if chief:
                qat.save_ranges(gan.generator, model_dir, {"calibrated_at_step": step})
        qat.set_ranges(gan.generator, ranges)
        log.info("quantization-aware training: %d int8 activation ranges frozen (%s)",
                 len(ranges), os.path.join(model_dir, qat.RANGES_FILE))

    stopper = GracefulStop()
    best = BestGenerator(model_dir, gan, enabled=chief)
    callbacks = [NonFiniteGuard(gan, manager), stopper,
                 CheckpointSaver(manager, gan, t.checkpoint_every), best]
    console = None
    if verbose > 0 and chief:  # after BestGenerator: it reports the best score so far
        console = ConsoleProgress(gan, t.steps, progress, log_every, best, emit=log.info)
        callbacks.append(console)
    board = None
    if chief:
        board = TensorBoardLogger(os.path.join(model_dir, "logs"), gan, val_audio[:1],
                                  config.audio.sample_rate, t.sample_every,
                                  os.path.join(model_dir, "samples"))
        callbacks.append(board)
    val_ds = validation_dataset(val_audio, config, batch_size=replicas)
    history = {}
    try:
        while step < t.steps and not stopper.stop_requested:
            epoch, into_epoch = divmod(step, t.steps_per_epoch)
            if into_epoch:  # resumed mid-epoch: finish that epoch on its own
                epochs, steps_per_epoch = epoch + 1, t.steps_per_epoch - into_epoch
            else:
                epochs, steps_per_epoch = -(-t.steps // t.steps_per_epoch), t.steps_per_epoch
            # Before discriminator_start_step only G trains; the step function is retraced
            # when that changes.
            generator_only = step < t.discriminator_start_step
            if generator_only != gan.generator_only or gan.train_function is None:
                gan.generator_only = generator_only
                gan.make_train_function(force=True)
                log.info("step %d: training %s", step, "the generator alone (until step "
                         f"{t.discriminator_start_step})" if generator_only
                         else "generator and discriminator(s)")
            stop = t.discriminator_start_step if generator_only else t.steps
            data = strategy.distribute_datasets_from_function(
                lambda ctx, start=step: train_dataset(train_source, config, start, ctx))
            result = gan.fit(data, initial_epoch=epoch, epochs=epochs,
                             steps_per_epoch=steps_per_epoch, validation_data=val_ds,
                             callbacks=callbacks + [StopAt(gan, stop)], verbose=0,
                             shuffle=False)  # shuffled by construction; True only warns
            for key, values in result.history.items():
                history.setdefault(key, []).extend(values)
            step = int(gan.g_optimizer.iterations.numpy())
    finally:
        stopper.restore_handlers()
        if console is not None:
            console.close()
    if manager.latest_checkpoint is None or \
            step != int(manager.latest_checkpoint.rsplit("-", 1)[-1]):
        save_checkpoint(manager, gan, step)
    if chief:
        board.write_sample(step)
        board.close()
    else:
        tf.io.gfile.rmtree(ckpt_dir)
    return {"step": step, "start_step": start_step, "steps": t.steps,
            "seconds": time.monotonic() - started, "history": history,
            "interrupted": stopper.received, "checkpoint": manager.latest_checkpoint,
            "chief": chief, "model_dir": model_dir,
            "best": ({"step": best.best_step, "val_mel_l1": best.best, "path": best.weights_path}
                     if chief and best.best_step is not None else None),
            "samples": board.samples_dir if board else None,
            "logs": os.path.join(model_dir, "logs") if board else None,
            "held_out": list(val_files), "not_held_out": not_held_out,
            "steps_per_epoch": t.steps_per_epoch}


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
        from tf_melgan.callbacks import REFERENCE_SAMPLE
        lines.append(f"  samples:    {summary['samples']} ({REFERENCE_SAMPLE}: the held-out "
                     f"clip; step_*.wav: the generator's)")
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
    from tf_melgan.progress import format_duration
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
    from tf_melgan.config import ConfigError, load_config
    try:
        config = load_config(config_path, fv.set)
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        return 1
    if fv.data:  # set directly: a path is not YAML ('#' would start a comment)
        config.data.path = fv.data
    strategy = make_strategy(fv.strategy, fv.cpu_replicas)
    from tf_melgan.checkpoint import ModelDirError
    from tf_melgan.data import DataError
    try:
        summary = run(config, fv.model_dir, strategy, fv.verbose, fv.init_from,
                      progress=fv.progress, log_every=fv.log_every)
    except DataError as e:
        print(f"data error: {e}", file=sys.stderr)
        return 1
    except (ModelDirError, ConfigError) as e:
        print(f"--init_from: {e}", file=sys.stderr)
        return 1
    except SystemExit as e:  # run()'s one-line refusals
        if not isinstance(e.code, str):
            raise
        print(e.code, file=sys.stderr)
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
