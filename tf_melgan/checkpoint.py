"""Reading trained models back from a model dir (what `train` writes)."""

from __future__ import annotations

import os

import tensorflow as tf

from tf_melgan.config import Config, load_config
from tf_melgan.generator import Generator
from tf_melgan.pretrained import resolve


class ModelDirError(ValueError):
    """A path is not a usable tf-melgan model dir; the message says what is missing."""


def restore_weights(path: str, **models) -> None:
    """Restores e.g. generator=G, discriminator=D from a train.py checkpoint (the rest of
    it, optimizers and step, is left alone); raises if any of their variables is missing."""
    status = tf.train.Checkpoint(**models).restore(path)
    status.expect_partial()
    status.assert_existing_objects_matched()


def load_model_config(model_dir: str) -> Config:
    """The config of a model dir or of a shipped vocoder named `model_dir` ('ljspeech')."""
    model_dir = resolve(model_dir)
    path = os.path.join(model_dir, "config.yaml")
    if not os.path.isfile(path):
        raise ModelDirError(f"{model_dir} is not a tf-melgan model dir (no config.yaml)")
    return load_config(path)


def load_generator(model_dir: str, which: str = "best", fold: bool = True):
    """Returns (generator, config) from a model dir, or a shipped vocoder's name.

    which: 'best' (best_generator.weights.h5, the lowest validation log-mel L1; falls back
    to the latest checkpoint when there is none yet) or 'latest' (the latest checkpoint).
    fold: fold weight normalization into plain kernels (for inference and export).
    """
    if which not in ("best", "latest"):
        raise ValueError(f"which must be 'best' or 'latest', got {which!r}")
    model_dir = resolve(model_dir)
    config = load_model_config(model_dir)
    generator = Generator.from_config_dataclass(config.generator, config.audio.n_mels,
                                                name="generator")
    generator.build((None, None, config.audio.n_mels))
    best = os.path.join(model_dir, "best_generator.weights.h5")
    if which == "best" and os.path.isfile(best):
        generator.load_weights(best)
    else:
        latest = tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints"))
        if latest is None:
            raise ModelDirError(f"{model_dir} has no checkpoint yet")
        restore_weights(latest, generator=generator)
    return (generator.folded() if fold else generator), config
