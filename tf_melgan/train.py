"""Training CLI: python -m tf_melgan.train --config configs/base.yaml --model_dir DIR.

Resumes from the latest checkpoint in DIR, saves on Ctrl-C / SIGTERM, keeps the generator
with the best validation log-mel L1, logs to TensorBoard (DIR/logs). One training per DIR
(DIR/.lock); stops on a non-finite loss; every file written atomically (README "What
survives what").
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import warnings

from absl import app, flags

# Our datasets are shuffled by construction; Keras warns about its own shuffle flag.
warnings.filterwarnings("ignore", message=".*`shuffle=True` was passed.*")

FLAGS = flags.FLAGS
flags.DEFINE_string("config", None, "YAML config; defaults to MODEL_DIR/config.yaml when resuming.")
flags.DEFINE_string("model_dir", None, "Checkpoints, logs, samples and the resolved config.")
flags.DEFINE_string("data", None, "Audio folder (LJ Speech layout or any folder); sets data.path.")
flags.DEFINE_multi_string("set", [], "Config override section.key=value, repeatable.")
flags.DEFINE_enum("strategy", "auto", ["auto", "default", "mirrored", "multi_worker"],
                  "auto: MirroredStrategy on GPUs, MultiWorkerMirroredStrategy when TF_CONFIG "
                  "names several workers, else the default strategy.")
flags.DEFINE_integer("cpu_replicas", 0, "Split the CPU into this many logical devices and "
                     "mirror over them (testing distribution without GPUs).")
flags.DEFINE_string("init_from", None, "Another model dir (e.g. from tf_melgan.import_pytorch): "
                    "when MODEL_DIR has no checkpoint yet, start G and D from its latest "
                    "checkpoint; optimizers and step start fresh, MODEL_DIR's config rules.")
flags.DEFINE_integer("verbose", 1, "Keras progress bar: 0 silent, 1 bar, 2 a line per epoch.")

log = logging.getLogger("tf_melgan")


def make_strategy(name: str, cpu_replicas: int = 0):
    """Picks a tf.distribute strategy; must run before any other TensorFlow work."""
    import tensorflow as tf
    if cpu_replicas:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * cpu_replicas)
    tf_config = json.loads(os.environ.get("TF_CONFIG", "{}"))
    workers = len(tf_config.get("cluster", {}).get("worker", []))
    if name == "auto":
        if workers > 1:
            name = "multi_worker"
        elif tf.config.list_physical_devices("GPU") or cpu_replicas:
            name = "mirrored"
        else:
            name = "default"
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "mirrored":
        devices = None
        if cpu_replicas and not tf.config.list_physical_devices("GPU"):
            devices = [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices)
    return tf.distribute.get_strategy()


def is_chief(strategy) -> bool:
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True
    return resolver.task_type in ("chief", None) or (
        resolver.task_type == "worker" and resolver.task_id == 0
        and "chief" not in resolver.cluster_spec().as_dict())


def set_precision(mode: str):
    import keras
    import tensorflow as tf
    if mode == "auto":
        mode = "mixed_float16" if tf.config.list_physical_devices("GPU") else "mixed_bfloat16"
    keras.mixed_precision.set_global_policy("float32" if mode == "none" else mode)
    return mode


ARCHITECTURE = {"audio": ["n_mels"],
                "generator": ["ngf", "ratios", "n_residual_layers", "activation", "upsampling"],
                "discriminator": ["num_scales", "ndf", "n_layers", "downsampling",
                                  "max_channels", "periods", "period_channels"]}


def init_checkpoint(config, init_from: str) -> str:
    """What to start from in `init_from` (a model dir or a shipped vocoder's name), checked
    to have `config`'s architecture: its latest checkpoint (G and D), or, for a dir with
    only a generator (a shipped vocoder), its best_generator.weights.h5."""
    import tensorflow as tf

    from tf_melgan.checkpoint import load_model_config
    from tf_melgan.pretrained import resolve
    init_from = resolve(init_from)
    path = tf.train.latest_checkpoint(os.path.join(init_from, "checkpoints"))
    if path is None:
        path = os.path.join(init_from, "best_generator.weights.h5")
        if not os.path.isfile(path):
            raise SystemExit(f"--init_from {init_from}: no checkpoint in "
                             f"{init_from}/checkpoints and no best_generator.weights.h5")
    other = load_model_config(init_from)
    differ = [f"{section}.{name}: {getattr(getattr(other, section), name)} there, "
              f"{getattr(getattr(config, section), name)} here"
              for section, names in ARCHITECTURE.items() for name in names
              if getattr(getattr(other, section), name) != getattr(getattr(config, section), name)
              and (section != "discriminator" or not path.endswith(".h5"))]
    if differ:
        raise SystemExit(f"--init_from {init_from}: different architecture ({'; '.join(differ)})")
    if other.audio != config.audio:
        log.warning("--init_from %s was trained on other audio features (%s)", init_from,
                    other.audio)
    return path


def _flat(config) -> dict:
    return {f"{section}.{name}": value for section, values in config.to_dict().items()
            for name, value in values.items()}


def _same_stats(a, b) -> bool:
    import numpy as np
    try:
        return a == b or (bool(a) and bool(b) and np.array_equal(np.load(a), np.load(b)))
    except (OSError, ValueError):
        return False


def check_resume_config(config, model_dir: str) -> list[str]:
    """When MODEL_DIR holds a trained model, compares `config` with the config.yaml it was
    trained with: raises TrainingError naming every architecture key that differs (its
    checkpoints could not be restored), else returns the other changed keys as
    "key: old -> new" (steps, learning rates, paths may change on resume). Writes nothing."""
    import tensorflow as tf

    from tf_melgan.callbacks import TrainingError
    from tf_melgan.config import ConfigError, load_config

    saved_path = os.path.join(model_dir, "config.yaml")
    trained = (tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints"))
               or os.path.isfile(os.path.join(model_dir, "best_generator.weights.h5")))
    if not trained or not os.path.isfile(saved_path):
        return []
    try:
        saved = load_config(saved_path)
    except ConfigError as e:
        raise TrainingError(f"cannot check the architecture of the model in {model_dir}: "
                            f"{e}") from None
    old, new = _flat(saved), _flat(config)
    keys = [f"{section}.{name}" for section, names in ARCHITECTURE.items() for name in names]
    differ = [f"{k} {old[k]} there, {new[k]} now" for k in keys if old[k] != new[k]]
    if differ:
        raise TrainingError(f"{model_dir} holds a model of another architecture: "
                            f"{'; '.join(differ)} (resume without changing these, or use "
                            f"another --model_dir)")
    changed = [k for k in old if k not in keys and old[k] != new[k]]
    if "audio.stats_path" in changed and _same_stats(old["audio.stats_path"],
                                                     new["audio.stats_path"]):
        changed.remove("audio.stats_path")
    return [f"{k}: {old[k]} -> {new[k]}" for k in changed]


def run(config, model_dir: str, strategy=None, verbose: int = 1, init_from=None) -> dict:
    """Trains (or resumes) in `model_dir` until `config.training.steps`. Returns a summary.

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
        return _train(config, model_dir, strategy, verbose, init_from)
    finally:
        if lock is not None:
            lock.release()
            if created and not os.path.exists(os.path.join(model_dir, "config.yaml")):
                try:  # training never started: leave no empty model dir behind
                    os.remove(os.path.join(model_dir, LOCK_NAME))
                    os.rmdir(model_dir)
                except OSError:
                    pass


def _train(config, model_dir: str, strategy, verbose: int, init_from) -> dict:
    import keras
    import tensorflow as tf

    from tf_melgan.atomic import WriteError, remove_temporaries, write_text
    from tf_melgan.callbacks import (BestGenerator, CheckpointSaver, GracefulStop,
                                     NonFiniteGuard, StopAt, TensorBoardLogger, TrainingError,
                                     save_checkpoint)
    from tf_melgan.cli import one_line
    from tf_melgan.data import (AudioSource, find_audio_files, split_files, train_dataset,
                                validation_audio, validation_dataset, warn_short_clips)
    from tf_melgan.checkpoint import remove_checkpoint_debris, restore_weights
    from tf_melgan.model import MelGAN, make_optimizer

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
    train_source = AudioSource(train_files, config.audio.sample_rate, config.audio.peak,
                               config.data.cache_max_gb, verbose=verbose > 0 and chief)
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
    step = int(gan.g_optimizer.iterations.numpy())
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

    stopper = GracefulStop()
    callbacks = [NonFiniteGuard(gan, manager), stopper,
                 CheckpointSaver(manager, gan, t.checkpoint_every),
                 BestGenerator(model_dir, gan, enabled=chief)]
    if chief:
        callbacks.append(TensorBoardLogger(os.path.join(model_dir, "logs"), gan, val_audio[:1],
                                           config.audio.sample_rate, t.sample_every,
                                           os.path.join(model_dir, "samples")))
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
                             callbacks=callbacks + [StopAt(gan, stop)], verbose=verbose)
            for key, values in result.history.items():
                history.setdefault(key, []).extend(values)
            step = int(gan.g_optimizer.iterations.numpy())
    finally:
        stopper.restore_handlers()
    if manager.latest_checkpoint is None or \
            step != int(manager.latest_checkpoint.rsplit("-", 1)[-1]):
        save_checkpoint(manager, gan, step)
    if chief:
        callbacks[-1].write_sample(step)
    else:
        tf.io.gfile.rmtree(ckpt_dir)
    return {"step": step, "history": history, "interrupted": stopper.stop_requested,
            "checkpoint": manager.latest_checkpoint}


def main(argv):
    del argv
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    logging.getLogger("absl").setLevel(logging.WARNING)  # TF's per-save "Sharding callback"
    from tf_melgan.config import ConfigError, load_config
    if not FLAGS.model_dir:
        raise app.UsageError("--model_dir is required")
    config_path = FLAGS.config
    saved = os.path.join(FLAGS.model_dir, "config.yaml")
    if config_path is None:
        if not os.path.isfile(saved):
            raise app.UsageError("--config is required for a new model_dir")
        config_path = saved
    try:
        config = load_config(config_path, FLAGS.set)
    except ConfigError as e:
        sys.exit(f"config error: {e}")
    if FLAGS.data:  # set directly: a path is not YAML ('#' would start a comment)
        config.data.path = FLAGS.data
    strategy = make_strategy(FLAGS.strategy, FLAGS.cpu_replicas)
    from tf_melgan.checkpoint import ModelDirError
    from tf_melgan.data import DataError
    try:
        summary = run(config, FLAGS.model_dir, strategy, FLAGS.verbose, FLAGS.init_from)
    except DataError as e:
        sys.exit(f"data error: {e}")
    except (ModelDirError, ConfigError) as e:
        sys.exit(f"--init_from: {e}")
    log.info("stopped at step %d; checkpoint %s", summary["step"], summary["checkpoint"])
    if summary["interrupted"]:
        sys.exit(128 + signal.SIGTERM)


def cli():
    app.run(main)


if __name__ == "__main__":
    cli()
