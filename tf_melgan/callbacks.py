"""Keras callbacks of the training loop: graceful stop, checkpoints, best model, TensorBoard,
console progress."""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import threading
import time

import keras
import numpy as np
import soundfile as sf
import tensorflow as tf

log = logging.getLogger("tf_melgan")
REFERENCE_SAMPLE = "reference.wav"  # MODEL_DIR/samples/: the held-out clip the samples vocode


def _step(gan) -> int:
    return int(gan.g_optimizer.iterations.numpy())


class GracefulStop(keras.callbacks.Callback):
    """First Ctrl-C / SIGTERM: finish the current step, then stop (the caller saves).
    A second Ctrl-C interrupts at once."""

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
            raise KeyboardInterrupt
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


class CheckpointSaver(keras.callbacks.Callback):
    """Saves G, D and both optimizers (with the step) every `every` steps."""

    def __init__(self, manager: tf.train.CheckpointManager, gan, every: int):
        super().__init__()
        self.manager, self.gan, self.every = manager, gan, every

    def on_train_batch_end(self, batch, logs=None):
        step = _step(self.gan)
        if step % self.every == 0:
            self.manager.save(checkpoint_number=step)


class BestGenerator(keras.callbacks.Callback):
    """Keeps the generator with the lowest validation log-mel L1 (the official criterion)
    in MODEL_DIR/best_generator.weights.h5, its score and step in best.json."""

    def __init__(self, model_dir: str, gan, enabled: bool = True):
        super().__init__()
        self.gan, self.enabled = gan, enabled
        self.weights_path = os.path.join(model_dir, "best_generator.weights.h5")
        self.json_path = os.path.join(model_dir, "best.json")
        self.best, self.best_step = math.inf, None
        if os.path.isfile(self.json_path):
            with open(self.json_path) as f:
                saved = json.load(f)
            self.best, self.best_step = saved["val_mel_l1"], saved.get("step")

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get("val_mel_l1")
        if not self.enabled or value is None or not value < self.best:
            return
        self.best, self.best_step = float(value), _step(self.gan)
        self.gan.generator.save_weights(self.weights_path)
        with open(self.json_path, "w") as f:
            json.dump({"val_mel_l1": self.best, "step": _step(self.gan)}, f)


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
            sf.write(reference, self.sample_audio[0], self.sample_rate)

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
        os.makedirs(self.samples_dir, exist_ok=True)
        sf.write(os.path.join(self.samples_dir, f"step_{step:08d}.wav"), fake[0], self.sample_rate)

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
            from tf_melgan.progress import Progress
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
