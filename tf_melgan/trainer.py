"""The training loop behind `python -m tf_melgan.train` (the CLI, tf_melgan.train): `run`
trains or resumes one model dir under a tf.distribute strategy.

Resumes from the latest checkpoint in the dir, saves on Ctrl-C / SIGTERM, keeps the
generator with the best validation log-mel L1, logs to TensorBoard (DIR/logs). One
training per dir (DIR/.lock); stops on a non-finite loss; every file written atomically
(docs/TRAINING.md "What survives what")."""

from __future__ import annotations

import logging
import os
import time

import keras
import tensorflow as tf

from tf_melgan import qat
from tf_melgan.atomic import WriteError, describe, remove_temporaries, write_text
from tf_melgan.builders import build_generator
from tf_melgan.callbacks import (BestGenerator, CheckpointSaver, ConsoleProgress, GracefulStop,
                                 NonFiniteGuard, REFERENCE_SAMPLE, StopAt, TensorBoardLogger,
                                 save_checkpoint)
from tf_melgan.checkpoint import remove_checkpoint_debris, restore_weights
from tf_melgan.cli import one_line
from tf_melgan.config import ConfigError
from tf_melgan.data import (AudioSource, find_audio_files, split_files, train_dataset,
                            validation_audio, validation_dataset, warn_short_clips)
from tf_melgan.distribute import is_chief, set_precision
from tf_melgan.errors import TrainingError
from tf_melgan.lock import LOCK_NAME, ModelDirBusy, ModelDirLock
from tf_melgan.mel_stats import store_mel_stats
from tf_melgan.model import MelGAN, make_optimizer
from tf_melgan.resume import check_resume_config, init_checkpoint
from tf_melgan.widen import widen_into

log = logging.getLogger("tf_melgan")


def run(config, model_dir: str, strategy=None, verbose: int = 1, init_from=None,
        progress: str = "auto", log_every: int = 50) -> dict:
    """Trains (or resumes) in `model_dir` until `config.training.steps`. Returns a summary
    (see tf_melgan.train.summary_text; 'interrupted' is the signal's name or None).
    verbose 0: no progress output; progress: 'auto' (a bar when stdout is a terminal, else a
    plain line every `log_every` steps), 'bar' or 'lines'.

    The chief holds MODEL_DIR/.lock throughout (tf_melgan.lock: a second training on the
    same dir is refused). Nothing is written in the model dir before the data and the
    checkpoint to resume from have loaded."""

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

    started = time.monotonic()
    progress = "lines" if verbose > 1 else progress
    t = config.training
    chief = is_chief(strategy)
    replicas = strategy.num_replicas_in_sync
    if t.batch_size % replicas:
        raise ConfigError(f"training.batch_size {t.batch_size} is not divisible by the "
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
    data = _load_data(config, chief, verbose > 0 and chief, progress, replicas, precision)

    gan, manager = _build(config, model_dir, strategy, precision, chief)
    _restore(gan, manager, model_dir, init_source)
    step = start_step = int(gan.g_optimizer.iterations.numpy())
    if chief:
        _tidy_and_record_config(config, model_dir)
    if t.qat:
        _freeze_qat_ranges(gan, config, model_dir, data["train_files"], step, chief)

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
        board = TensorBoardLogger(os.path.join(model_dir, "logs"), gan, data["val_audio"][:1],
                                  config.audio.sample_rate, t.sample_every,
                                  os.path.join(model_dir, "samples"))
        callbacks.append(board)
    val_ds = validation_dataset(data["val_audio"], config, batch_size=replicas)
    history = {}
    try:
        step = _fit(gan, config, strategy, data["train_source"], val_ds, callbacks, stopper,
                    step, history)
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
        tf.io.gfile.rmtree(manager.directory)  # the worker's scratch dir
    return {"step": step, "start_step": start_step, "steps": t.steps,
            "seconds": time.monotonic() - started, "history": history,
            "interrupted": stopper.received, "checkpoint": manager.latest_checkpoint,
            "chief": chief, "model_dir": model_dir,
            "best": ({"step": best.best_step, "val_mel_l1": best.best, "path": best.weights_path}
                     if chief and best.best_step is not None else None),
            "samples": board.samples_dir if board else None,
            "reference_sample": REFERENCE_SAMPLE,
            "logs": os.path.join(model_dir, "logs") if board else None,
            "held_out": list(data["val_files"]), "not_held_out": data["not_held_out"],
            "steps_per_epoch": t.steps_per_epoch}


def _load_data(config, chief: bool, show: bool, progress: str, replicas: int,
               precision: str) -> dict:
    """The training clips (decoded, cached) and the held-out ones, cropped for validation."""

    files = find_audio_files(config.data.path)
    train_files, val_files = split_files(files, config.data.validation_clips, config.data.holdout)
    not_held_out = bool(set(val_files) & set(train_files))
    if not_held_out and chief:
        log.warning("NO HELD-OUT AUDIO: %s is the only audio file, so it is trained on AND "
                    "validated on; the validation log-mel L1 and the 'best' generator measure "
                    "memorisation, not quality on unseen speech. Give --data a folder of "
                    "clips (data.validation_clips = %d of them are held out).", files[0],
                    config.data.validation_clips)
    a = config.audio
    train_source = AudioSource(train_files, a.sample_rate, a.peak, config.data.cache_max_gb,
                               verbose=show, progress=progress)
    val_source = AudioSource(val_files, a.sample_rate, a.peak, config.data.cache_max_gb,
                             verbose=False)
    val_audio = validation_audio(val_source, config.data.eval_segment_length)
    log.info("data: %d training clips (%.0f s), %d held out; %d replica(s), precision %s",
             len(train_source), train_source.seconds(), len(val_source), replicas, precision)
    if chief:
        warn_short_clips(train_source, config.training.segment_length)
    return {"train_files": train_files, "val_files": val_files, "not_held_out": not_held_out,
            "train_source": train_source, "val_audio": val_audio}


def _build(config, model_dir: str, strategy, precision: str, chief: bool):
    """The compiled MelGAN (seeded) and its CheckpointManager; non-chief workers take part
    in saving but write to a scratch dir (the manager's directory)."""

    keras.utils.set_random_seed(config.training.seed)
    with strategy.scope():
        gan = MelGAN.from_config_dataclass(config)
        fp16 = precision == "mixed_float16"
        try:
            gan.compile(make_optimizer(config.g_optimizer, fp16),
                        make_optimizer(config.d_optimizer, fp16),
                        jit_compile=config.training.jit_compile)
        except ValueError as e:  # an explicit grouped_conv that cannot run here
            raise ConfigError(str(e)) from None
        checkpoint = tf.train.Checkpoint(generator=gan.generator,
                                         g_optimizer=gan.g_optimizer,
                                         d_optimizer=gan.d_optimizer,
                                         **gan.named_discriminators)
    log.info("discriminator grouped convs: %s (discriminator.grouped_conv=%s)",
             gan.grouped_conv, config.discriminator.grouped_conv)
    ckpt_dir = os.path.join(model_dir, "checkpoints")
    if not chief:
        ckpt_dir = os.path.join(model_dir, f".worker_{strategy.cluster_resolver.task_id}")
    manager = tf.train.CheckpointManager(checkpoint, ckpt_dir,
                                         max_to_keep=config.training.keep_checkpoints)
    return gan, manager


def _restore(gan, manager, model_dir: str, init_source) -> None:
    """Every worker resumes from the chief's latest checkpoint, else starts from
    `init_source` (a generator .h5 or another model dir's checkpoint), else from scratch."""

    latest = tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints"))
    try:
        if latest:
            manager.checkpoint.restore(latest).expect_partial()
            log.info("resumed from %s", latest)
        elif init_source:
            _init(gan, init_source)
    except (ValueError, OSError, AssertionError, tf.errors.OpError) as e:
        raise TrainingError(f"cannot restore {latest or init_source.path}: {one_line(e)}") \
            from None


def _init(gan, source) -> None:
    """Starts G (and D, from a checkpoint) from `source` (tf_melgan.resume.InitSource),
    widening its generator when it is narrower (tf_melgan.widen)."""

    generator = build_generator(source.config) if source.widens else gan.generator
    if source.path.endswith(".h5"):
        generator.load_weights(source.path)
        log.info("initialised the generator from %s; the discriminators start fresh",
                 source.path)
    elif source.generator_only:
        restore_weights(source.path, generator=generator)
        log.info("initialised the generator from %s", source.path)
    else:
        models = {"generator": generator, **gan.named_discriminators}
        restore_weights(source.path, **models)
        log.info("initialised generator and discriminator(s) from %s", source.path)
    if source.widens:
        widen_into(generator, gan.generator)


def _tidy_and_record_config(config, model_dir: str) -> None:
    """Training can start: removes what killed runs left, then records the config (and the
    mel statistics it refers to)."""

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


def _freeze_qat_ranges(gan, config, model_dir: str, train_files, step: int,
                       chief: bool) -> None:
    """training.qat: the int8 activation ranges the run saved, else the float model's,
    calibrated as the converter does (and saved), frozen in the generator."""

    ranges = qat.load_ranges(model_dir)
    if ranges is None:
        # needs ai-edge-litert (the [litert] extra): only for a QAT run's first calibration
        from tf_melgan.deploy.convert.data import calibration_mels
        mels = calibration_mels(train_files, config.audio, 32, 256, False, (
            config.data.gain_min, config.data.gain_max), seed=config.training.seed)
        ranges = qat.calibrate(gan.generator, mels)
        if chief:
            qat.save_ranges(gan.generator, model_dir, {"calibrated_at_step": step})
    qat.set_ranges(gan.generator, ranges)
    log.info("quantization-aware training: %d int8 activation ranges frozen (%s)",
             len(ranges), os.path.join(model_dir, qat.RANGES_FILE))


def _fit(gan, config, strategy, train_source, val_ds, callbacks, stopper, step: int,
         history: dict) -> int:
    """Keras fit, an epoch of `steps_per_epoch` at a time, until training.steps or a stop
    request; G alone before training.discriminator_start_step. Extends `history`; returns
    the step reached."""

    t = config.training
    while step < t.steps and not stopper.stop_requested:
        epoch, into_epoch = divmod(step, t.steps_per_epoch)
        if into_epoch:  # resumed mid-epoch: finish that epoch on its own
            epochs, steps_per_epoch = epoch + 1, t.steps_per_epoch - into_epoch
        else:
            epochs, steps_per_epoch = -(-t.steps // t.steps_per_epoch), t.steps_per_epoch
        # The step function is retraced when G-alone changes to G and D.
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
    return step
