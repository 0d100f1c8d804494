"""Reading trained models back from a model dir (what `train` writes)."""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Optional

import tensorflow as tf

from tf_melgan.config import Config, load_config
from tf_melgan.generator import Generator


BEST_WEIGHTS = "best_generator.weights.h5"  # what train's BestGenerator writes
BEST_JSON = "best.json"


class ModelDirError(ValueError):
    """A path is not a usable tf-melgan model dir; the message says what is missing."""


def restore_weights(path: str, **models) -> None:
    """Restores e.g. generator=G, discriminator=D from a train.py checkpoint (the rest of
    it, optimizers and step, is left alone); raises if any of their variables is missing."""
    status = tf.train.Checkpoint(**models).restore(path)
    status.expect_partial()
    status.assert_existing_objects_matched()


def load_model_config(model_dir: str) -> Config:
    path = os.path.join(model_dir, "config.yaml")
    if not os.path.isfile(path):
        raise ModelDirError(f"{model_dir} is not a tf-melgan model dir (no config.yaml)")
    return load_config(path)


@dataclasses.dataclass
class GeneratorSource:
    """Which generator of a model dir is used: `which` 'best' (best_generator.weights.h5)
    or 'latest' (a checkpoint), its file, training step and validation log-mel L1 (None
    when not measured at that step); `best` the model dir's best (step, L1), if any."""
    which: str
    path: str
    step: Optional[int]
    val_mel_l1: Optional[float]
    best: Optional[tuple] = None

    def describe(self) -> str:
        """'best generator (step 900, validation log-mel L1 0.7412)', or e.g. 'latest
        checkpoint (step 1000; the best is step 900, validation log-mel L1 0.7412)'."""
        what = "best generator" if self.which == "best" else "latest checkpoint"
        text = f"{what} (step {self.step if self.step is not None else '?'}"
        if self.val_mel_l1 is not None:
            return f"{text}, validation log-mel L1 {self.val_mel_l1:.4f})"
        if self.best is not None:
            return f"{text}; the best is step {self.best[0]}, validation log-mel L1 " \
                   f"{self.best[1]:.4f})"
        return f"{text}; not validated yet)"

    def as_dict(self) -> dict:
        return {"which": self.which, "path": self.path, "step": self.step,
                "val_mel_l1": self.val_mel_l1}


def generator_source(model_dir: str, which: str = "best") -> GeneratorSource:
    """The generator `load_generator(model_dir, which)` loads. Raises ModelDirError."""
    if which not in ("best", "latest"):
        raise ValueError(f"which must be 'best' or 'latest', got {which!r}")
    best_path = os.path.join(model_dir, BEST_WEIGHTS)
    best = None
    try:
        with open(os.path.join(model_dir, BEST_JSON)) as f:
            saved = json.load(f)
        best = (int(saved["step"]), float(saved["val_mel_l1"]))
    except (OSError, ValueError, KeyError, TypeError):
        pass  # no score: the weights are still used, without one
    if which == "best" and os.path.isfile(best_path):
        return GeneratorSource("best", best_path, best and best[0], best and best[1], best)
    latest = tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints"))
    if latest is None:
        raise ModelDirError(f"{model_dir} has no checkpoint yet")
    step = latest.rsplit("-", 1)[-1]
    step = int(step) if step.isdigit() else None
    score = best[1] if best is not None and best[0] == step else None
    return GeneratorSource("latest", latest, step, score, best)


def load_generator(model_dir: str, which: str = "best", fold: bool = True):
    """Returns (generator, config) from a model dir.

    which: 'best' (best_generator.weights.h5, the lowest validation log-mel L1; falls back
    to the latest checkpoint when there is none yet) or 'latest' (the latest checkpoint).
    fold: fold weight normalization into plain kernels (for inference and export).
    generator_source(model_dir, which) says which one that is.
    """
    if which not in ("best", "latest"):
        raise ValueError(f"which must be 'best' or 'latest', got {which!r}")
    config = load_model_config(model_dir)
    generator = Generator.from_config_dataclass(config.generator, config.audio.n_mels,
                                                name="generator")
    generator.build((None, None, config.audio.n_mels))
    source = generator_source(model_dir, which)
    if source.which == "best":
        generator.load_weights(source.path)
    else:
        restore_weights(source.path, generator=generator)
    return (generator.folded() if fold else generator), config
