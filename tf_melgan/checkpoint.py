"""Reading trained models back from a model dir (what `train` writes), and removing what
interrupted saves leave in one."""

from __future__ import annotations

import os
import re
import shutil

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
        try:
            generator.load_weights(best)
        except (OSError, ValueError, KeyError) as e:  # e.g. cut off by an older version
            from tf_melgan.cli import one_line
            raise ModelDirError(f"{best} is unreadable ({type(e).__name__}: {one_line(e)}); "
                                f"the latest checkpoint may still load (--which latest)") \
                from None
    else:
        latest = tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints"))
        if latest is None:
            raise ModelDirError(f"{model_dir} has no checkpoint yet")
        restore_weights(latest, generator=generator)
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
