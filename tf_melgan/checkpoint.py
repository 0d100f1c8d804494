"""Reading trained models back from a model dir (what `train` writes), and removing what
interrupted saves leave in one."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
from typing import Optional

import tensorflow as tf

from tf_melgan.builders import build_generator
from tf_melgan.cli import one_line
from tf_melgan.config import Config, load_config
from tf_melgan.errors import TfMelganError


BEST_WEIGHTS = "best_generator.weights.h5"  # what train's BestGenerator writes
BEST_JSON = "best.json"


class ModelDirError(TfMelganError, ValueError):
    """A path is not a usable tf-melgan model dir; the message says what is missing."""


def restore_weights(path: str, **models) -> None:
    """Restores e.g. generator=G, discriminator=D from a train.py checkpoint (the rest of
    it, optimizers and step, is left alone); raises if any of their variables is missing."""
    status = tf.train.Checkpoint(**models).restore(path)
    status.expect_partial()
    status.assert_existing_objects_matched()


def load_model_config(model_dir: str) -> Config:
    """The config of a model dir (a path: a shipped vocoder's name is resolved at the edge,
    by the CLIs and load_vocoder, with tf_melgan.pretrained.resolve)."""
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


def load_generator(model_dir: str, which: str = "best", fold: bool = True,
                   quantize: bool = False):
    """Returns (generator, config) from a model dir (a path; see load_model_config).

    which: 'best' (best_generator.weights.h5, the lowest validation log-mel L1; falls back
    to the latest checkpoint when there is none yet) or 'latest' (the latest checkpoint).
    fold: fold weight normalization into plain kernels (for inference and export).
    quantize: the generator simulates LiteRT's int8 (tf_melgan.qat; ranges not set:
    tf_melgan.qat.load_quantized sets them), with the model's training.qat_float_output
    and qat_float_stages.
    generator_source(model_dir, which) says which one that is.
    """
    if which not in ("best", "latest"):
        raise ValueError(f"which must be 'best' or 'latest', got {which!r}")
    config = load_model_config(model_dir)
    generator = build_generator(config, quantize=quantize)
    source = generator_source(model_dir, which)
    if source.which == "best":
        try:
            generator.load_weights(source.path)
        except (OSError, ValueError, KeyError) as e:  # e.g. cut off by an older version
            raise ModelDirError(f"{source.path} is unreadable ({type(e).__name__}: "
                                f"{one_line(e)}); the latest checkpoint may still load "
                                f"(--which latest)") from None
    else:
        restore_weights(source.path, generator=generator)
    return (generator.folded() if fold else generator), config


_CKPT_FILE = re.compile(r"^(?P<prefix>.+?)\.(?:index|data-(?P<shard>\d+)-of-(?P<shards>\d+))$")


def is_complete_checkpoint(prefix: str) -> bool:
    """Whether the checkpoint `prefix` (e.g. DIR/ckpt-3) has a readable index and all its
    data shards."""
    folder, name = os.path.split(prefix)
    files = [n for n in os.listdir(folder) if n.startswith(name + ".")] \
        if os.path.isdir(folder) else []
    index = prefix + ".index"
    shards = {int(m["shards"]) for m in map(_CKPT_FILE.match, files)
              if m and m["prefix"] == name and m["shards"]}
    if not os.path.isfile(index) or os.path.getsize(index) == 0 or len(shards) != 1:
        return False
    (count,) = shards
    if not all(os.path.isfile(f"{prefix}.data-{i:05d}-of-{count:05d}") for i in range(count)):
        return False
    try:
        tf.train.load_checkpoint(prefix)
    except (tf.errors.OpError, ValueError):
        return False
    return True


def remove_checkpoint_debris(ckpt_dir: str) -> list[str]:
    """Removes what interrupted saves leave in a checkpoints dir: TensorFlow's staging
    folders (`ckpt-N_temp/`), its temporary state files (`checkpoint.tmp...`) and the files
    of checkpoints that are not complete (a 0-byte `.index` and an orphaned data file; the
    data file of an old checkpoint whose index the manager had deleted when the kill came).
    Every complete checkpoint is kept, listed in the `checkpoint` state file or not, and so
    is the latest listed one in any case (it is what a resume reads). Only call it while
    nothing saves there (train holds the model dir's lock). Returns the removed paths."""
    if not os.path.isdir(ckpt_dir):
        return []
    state = tf.train.get_checkpoint_state(ckpt_dir)
    latest = None
    if state is not None and state.model_checkpoint_path:
        latest = os.path.join(ckpt_dir, os.path.basename(state.model_checkpoint_path))
    removed, prefixes = [], {}
    for name in sorted(os.listdir(ckpt_dir)):
        path = os.path.join(ckpt_dir, name)
        match = _CKPT_FILE.match(name)
        if name.endswith("_temp") and os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
        elif name.startswith("checkpoint.tmp") or ".tempstate" in name:
            os.remove(path)
            removed.append(path)
        elif match and os.path.isfile(path):
            prefixes.setdefault(os.path.join(ckpt_dir, match["prefix"]), []).append(path)
    for prefix, files in prefixes.items():
        if prefix != latest and not is_complete_checkpoint(prefix):
            for path in files:
                os.remove(path)
                removed.append(path)
    return removed
