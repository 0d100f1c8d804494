"""Keras callbacks of the training loop: graceful stop, checkpoints, best model, TensorBoard,
and the guard that stops on a non-finite loss, and the console progress. Nothing
non-finite is ever saved, and every file is written atomically (tf_melgan.atomic;
checkpoints: TensorFlow's own staging and rename)."""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import sys
import threading
import time

import keras
import numpy as np
import soundfile as sf
import tensorflow as tf

from tf_melgan.atomic import WriteError, describe, replacing, replacing_all
from tf_melgan.checkpoint import BEST_JSON, BEST_WEIGHTS, remove_checkpoint_debris
from tf_melgan.errors import TrainingError
from tf_melgan.progress import Progress

log = logging.getLogger("tf_melgan")
REFERENCE_SAMPLE = "reference.wav"  # MODEL_DIR/samples/: the held-out clip the samples vocode


def _step(gan) -> int:
    return int(gan.g_optimizer.iterations.numpy())


def all_finite(variables) -> bool:
    """Whether every float variable holds only finite values (one device sync)."""
    checks = [tf.reduce_all(tf.math.is_finite(v)) for v in variables
              if tf.as_dtype(v.dtype).is_floating]
    return bool(tf.reduce_all(checks)) if checks else True


def state_variables(gan) -> list:
    """What a checkpoint holds: G, the discriminator(s) and both optimizers' variables."""
    return (gan.generator.weights + [w for d in gan.discriminators for w in d.weights]
            + gan.g_optimizer.variables + gan.d_optimizer.variables)


def _nbytes(variables) -> int:
    return sum(int(np.prod(v.shape)) * tf.as_dtype(v.dtype).size for v in variables)


def checkpoint_bytes(manager, variables) -> int:
    """The size of the next checkpoint: the last one's files (the same variables), else the
    variables' own bytes."""
    latest = manager.latest_checkpoint
    if latest:
        folder, name = os.path.split(latest)
        files = [os.path.join(folder, n) for n in os.listdir(folder) if n.startswith(name + ".")]
        if files:
            return sum(os.path.getsize(f) for f in files)
    return _nbytes(variables)


def last_checkpoint_note(manager) -> str:
    latest = manager.latest_checkpoint
    return f"the last checkpoint, {latest}, is intact" if latest else "no checkpoint yet"


def save_checkpoint(manager: tf.train.CheckpointManager, gan, step: int) -> str:
    """Saves checkpoint `step`, refusing non-finite weights; a failed write (full disk,
    read-only) raises TrainingError, and the previous checkpoints stay as they were."""

    variables = state_variables(gan)
    if not all_finite(variables):
        raise TrainingError(f"the weights at step {step} are not finite: not saved, "
                            f"stopped; {last_checkpoint_note(manager)}")
    try:
        return manager.save(checkpoint_number=step)
    except (tf.errors.OpError, OSError) as e:
        note = last_checkpoint_note(manager)
        remove_checkpoint_debris(manager.directory)  # the partial save, to free its space
        where = os.path.join(manager.directory, f"ckpt-{step}")
        need = checkpoint_bytes(manager, variables)
        raise TrainingError(f"cannot save checkpoint {step}: "
                            f"{describe(e, where, need)}; {note}") from None


class GracefulStop(keras.callbacks.Callback):
    """First Ctrl-C / SIGTERM: finish the current step, then stop (the caller saves).
    A second Ctrl-C aborts at once: one line on stderr, status 130, no traceback."""

    def __init__(self):
        super().__init__()
        self.stop_requested = False
        self.received = None  # the signal's name, e.g. 'SIGTERM'
        self._previous = {}

    def on_train_begin(self, logs=None):
        if self._previous or threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum, frame):
        if self.stop_requested and signum == signal.SIGINT:
            # Abort now, without a traceback; files being written are temporaries (removed
            # on the next start), so every file in the model dir stays whole.
            sys.stdout.flush()
            sys.stderr.write("error: interrupted twice: aborted without saving; the last "
                             "checkpoint is intact\n")
            sys.stderr.flush()
            os._exit(128 + signal.SIGINT)
        self.stop_requested = True
        self.received = signal.Signals(signum).name
        log.warning("%s received: saving a checkpoint after this step (Ctrl-C again to abort)",
                    self.received)

    def on_train_batch_end(self, batch, logs=None):
        if self.stop_requested:
            self.model.stop_training = True

    def restore_handlers(self):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}


class StopAt(keras.callbacks.Callback):
    """Ends training at `last_step` even inside an epoch (the last one may be partial)."""

    def __init__(self, gan, last_step: int):
        super().__init__()
        self.gan, self.last_step = gan, last_step

    def on_train_batch_end(self, batch, logs=None):
        if _step(self.gan) >= self.last_step:
            self.model.stop_training = True


class NonFiniteGuard(keras.callbacks.Callback):
    """Stops training at the first step with a NaN or infinite loss, before any other
    callback can save that step: raises TrainingError naming the step, the losses and the
    last (finite) checkpoint. Put it first in the callback list."""

    def __init__(self, gan, manager: tf.train.CheckpointManager):
        super().__init__()
        self.gan, self.manager = gan, manager

    def on_train_batch_end(self, batch, logs=None):
        # Keras passes the epoch's running means: the first bad step makes them non-finite.
        values = {k: float(np.asarray(v, np.float64).ravel()[0]) for k, v in (logs or {}).items()}
        bad = {k: v for k, v in values.items() if not math.isfinite(v)}
        if not bad:
            return
        losses = ", ".join(f"{k} {v}" for k, v in bad.items())
        raise TrainingError(f"non-finite loss at step {_step(self.gan)} ({losses}): stopped "
                            f"without saving it; {last_checkpoint_note(self.manager)} (lower "
                            f"the learning rates or check the data, then rerun to resume)")


class CheckpointSaver(keras.callbacks.Callback):
    """Saves G, D and both optimizers (with the step) every `every` steps."""

    def __init__(self, manager: tf.train.CheckpointManager, gan, every: int):
        super().__init__()
        self.manager, self.gan, self.every = manager, gan, every

    def on_train_batch_end(self, batch, logs=None):
        step = _step(self.gan)
        if step % self.every == 0:
            save_checkpoint(self.manager, self.gan, step)


class BestGenerator(keras.callbacks.Callback):
    """Keeps the generator with the lowest validation log-mel L1 (the official criterion)
    in MODEL_DIR/BEST_WEIGHTS, its score and step in BEST_JSON (tf_melgan.checkpoint). Both are
    written to temporaries first and renamed weights first: a kill at any point leaves the
    previous pair, or the new weights with the old (higher) score."""

    def __init__(self, model_dir: str, gan, enabled: bool = True):
        super().__init__()
        self.gan, self.enabled = gan, enabled
        self.weights_path = os.path.join(model_dir, BEST_WEIGHTS)
        self.json_path = os.path.join(model_dir, BEST_JSON)
        self.best, self.best_step = math.inf, None
        if os.path.isfile(self.json_path):
            try:
                with open(self.json_path) as f:
                    saved = json.load(f)
                self.best, self.best_step = float(saved["val_mel_l1"]), saved.get("step")
            except (ValueError, KeyError, TypeError) as e:  # e.g. an older run's empty file
                log.warning("%s is unreadable (%s): the next validation result replaces "
                            "the best generator", self.json_path, type(e).__name__)

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get("val_mel_l1")
        if not self.enabled or value is None or not value < self.best:
            return
        if not math.isfinite(value) or not all_finite(self.gan.generator.weights):
            return  # never a non-finite best (NonFiniteGuard reports the cause)
        step = _step(self.gan)
        text = json.dumps({"val_mel_l1": float(value), "step": step})
        try:
            with replacing_all([self.weights_path, self.json_path],
                               _nbytes(self.gan.generator.weights)) as (weights, score):
                self.gan.generator.save_weights(weights)
                with open(score, "w") as f:
                    f.write(text)
        except WriteError as e:
            raise TrainingError(f"cannot save the best generator of step {step}: {e}; the "
                                f"previous one is intact") from None
        self.best, self.best_step = float(value), step


def mel_image(mel) -> np.ndarray:
    """[frames, n_mels] log10-mel -> [1, n_mels, frames, 1] image in [0, 1], low bands at the bottom."""
    img = (np.asarray(mel, np.float32).T[::-1] + 5.0) / 6.0
    return np.clip(img, 0.0, 1.0)[None, :, :, None]


class TensorBoardLogger(keras.callbacks.Callback):
    """Scalars (losses, mel L1, steps/s) every `log_every` steps and per epoch; audio and
    mel images of a held-out clip every `sample_every` steps (also written as wav files,
    beside the clip itself as `reference.wav`, to compare by ear)."""

    def __init__(self, log_dir, gan, sample_audio, sample_rate, sample_every, samples_dir,
                 log_every=50):
        super().__init__()
        self.gan, self.sample_rate, self.sample_every = gan, sample_rate, sample_every
        self.sample_audio = np.asarray(sample_audio, np.float32)
        self.samples_dir, self.log_every = samples_dir, log_every
        self.writer = tf.summary.create_file_writer(log_dir)
        self._last = None

    def on_train_begin(self, logs=None):
        reference = os.path.join(self.samples_dir, REFERENCE_SAMPLE)
        if not os.path.isfile(reference):
            os.makedirs(self.samples_dir, exist_ok=True)
            try:
                with replacing(reference, 2 * self.sample_audio.shape[-1] + 44) as tmp:
                    sf.write(tmp, self.sample_audio[0], self.sample_rate, format="WAV")
            except WriteError as e:
                raise TrainingError(f"cannot write the reference sample: {e}") from None

    def on_train_batch_end(self, batch, logs=None):
        step = _step(self.gan)
        if step % self.log_every == 0:
            now = time.perf_counter()
            with self.writer.as_default(step=step):
                for key, value in (logs or {}).items():
                    tf.summary.scalar(f"train/{key}", float(value))
                if self._last is not None and step > self._last[0]:
                    tf.summary.scalar("train/steps_per_sec",
                                      (step - self._last[0]) / (now - self._last[1]))
            self._last = (step, now)
        if step % self.sample_every == 0:
            self.write_sample(step)

    def on_epoch_end(self, epoch, logs=None):
        with self.writer.as_default(step=_step(self.gan)):
            for key, value in (logs or {}).items():
                prefix = "validation" if key.startswith("val_") else "epoch"
                tf.summary.scalar(f"{prefix}/{key.removeprefix('val_')}", float(value))
        self.writer.flush()

    def write_sample(self, step):
        """Synthesizes the held-out sample clip; writes TensorBoard audio/images and a wav."""
        mel = self.gan.log_mel(self.sample_audio)
        fake = self.gan.generator(mel).numpy()
        with self.writer.as_default(step=step):
            both = np.concatenate([self.sample_audio, fake])[..., None]
            tf.summary.audio("audio/real_vs_generated", both, self.sample_rate, max_outputs=2)
            tf.summary.image("mel/real", mel_image(mel[0]))
            tf.summary.image("mel/generated", mel_image(self.gan.log_mel(fake)[0]))
        self.writer.flush()
        path = os.path.join(self.samples_dir, f"step_{step:08d}.wav")
        try:
            with replacing(path, 2 * fake.shape[-1] + 44) as tmp:  # 16-bit PCM
                sf.write(tmp, fake[0], self.sample_rate)
        except WriteError as e:
            raise TrainingError(f"cannot write the sample of step {step}: {e}") from None

    def close(self):
        self.writer.close()


class ConsoleProgress(keras.callbacks.Callback):
    """Training progress on the console (tf_melgan.progress): a bar on a terminal, else a
    plain line every `log_every` steps (step, losses, steps/s, ETA); a line per validation
    with the best score so far (from `best`, a BestGenerator). One bar for the whole run,
    across fit() calls. `emit` writes its lines (e.g. a logger's info)."""

    ON_BAR = {"d_loss": "d", "g_loss": "g", "mel_l1": "mel"}  # 100 columns: the main ones

    def __init__(self, gan, total_steps: int, mode: str = "auto", log_every: int = 50,
                 best=None, emit=None, stream=None):
        super().__init__()
        self.gan, self.best = gan, best
        self._settings = dict(total=total_steps, mode=mode, every=log_every, emit=emit,
                              stream=stream)
        self.progress = None

    def on_train_begin(self, logs=None):
        if self.progress is None:
            s = self._settings
            step = _step(self.gan)
            self.progress = Progress(s["total"], "step", "step", s["mode"], s["stream"],
                                     start=step, every=s["every"], emit=s["emit"])
            self.progress.message(f"training from step {step} to {s['total']} (the first "
                                  f"step also builds the training graph: it takes longest)")

    def losses(self, logs) -> str:
        """'d_loss 5.996 feature_matching 0.05467 ...' (all), or on the bar 'd 6 g 99.3 mel 2.2'."""
        logs = {k: float(v) for k, v in (logs or {}).items() if not k.startswith("val_")}
        if self.progress is not None and self.progress.mode == "bar":
            return " ".join(f"{short} {logs[k]:.3g}" for k, short in self.ON_BAR.items()
                            if k in logs)
        return " ".join(f"{k} {v:.4g}" for k, v in logs.items())

    def on_train_batch_end(self, batch, logs=None):
        self.progress.update(_step(self.gan), self.losses(logs))

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get("val_mel_l1")
        if value is None or self.progress is None:
            return
        step = _step(self.gan)
        text = f"step {step}: validation log-mel L1 {float(value):.4f}"
        if self.best is not None and self.best.enabled and self.best.best_step is not None:
            text += (" (best so far, saved)" if self.best.best_step == step else
                     f" (best {self.best.best:.4f} at step {self.best.best_step})")
        self.progress.message(text)

    def close(self):
        if self.progress is not None:
            self.progress.close()
