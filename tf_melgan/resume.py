"""What a training run starts from: its own model dir's checkpoint (resume; the config it
was trained with is checked first) or another model's (train --init_from)."""

from __future__ import annotations

import dataclasses
import logging
import os

import numpy as np
import tensorflow as tf

from tf_melgan.checkpoint import BEST_WEIGHTS, load_model_config
from tf_melgan.config import ConfigError, load_config
from tf_melgan.errors import TrainingError
from tf_melgan.pretrained import resolve

log = logging.getLogger("tf_melgan")

# The config keys that shape the weights: a checkpoint restores only into the same ones.
ARCHITECTURE = {"audio": ["n_mels"],
                "generator": ["ngf", "ratios", "n_residual_layers", "activation", "upsampling",
                              "head", "body", "dim", "n_blocks", "intermediate", "phase"],
                "discriminator": ["num_scales", "ndf", "n_layers", "downsampling",
                                  "max_channels", "periods", "period_channels",
                                  "spectrogram_resolutions", "spectrogram_channels"]}


@dataclasses.dataclass
class InitSource:
    """What train --init_from starts from: `path` (a checkpoint prefix, or a generator's
    .weights.h5), the `config` of the model it belongs to, the ngf it trains at, and
    whether its discriminators are left out (another discriminator architecture)."""
    path: str
    config: object
    target_ngf: int
    generator_only: bool = False

    @property
    def widens(self) -> bool:
        """Whether its generator grows into a wider one (tf_melgan.widen)."""
        return self.config.generator.ngf < self.target_ngf


def init_checkpoint(config, init_from: str) -> InitSource:
    """What to start from in `init_from` (a model dir or a shipped vocoder's name), checked
    to have `config`'s architecture: its latest checkpoint (G and D), or, for a dir with
    only a generator (a shipped vocoder), its best_generator.weights.h5. A larger
    generator.ngf here is allowed (nearest upsampling, no QAT): the generator is widened
    with the same output (tf_melgan.widen)."""

    init_from = resolve(init_from)
    path = tf.train.latest_checkpoint(os.path.join(init_from, "checkpoints"))
    if path is None:
        path = os.path.join(init_from, BEST_WEIGHTS)
        if not os.path.isfile(path):
            raise TrainingError(f"--init_from {init_from}: no checkpoint in "
                             f"{init_from}/checkpoints and no {BEST_WEIGHTS}")
    other = load_model_config(init_from)
    wider = (config.generator.ngf > other.generator.ngf
             and config.generator.upsampling == "nearest" and not config.training.qat)
    differ = [f"{section}.{name}: {getattr(getattr(other, section), name)} there, "
              f"{getattr(getattr(config, section), name)} here"
              for section, names in ARCHITECTURE.items() for name in names
              if getattr(getattr(other, section), name) != getattr(getattr(config, section), name)
              and not (wider and f"{section}.{name}" == "generator.ngf")]
    # Other discriminators (e.g. a GAN phase after a generator-only one): G comes from
    # the checkpoint, the discriminators start fresh.
    other_d = [d for d in differ if d.startswith("discriminator.")]
    differ = [d for d in differ if not d.startswith("discriminator.")]
    if differ:
        raise TrainingError(f"--init_from {init_from}: different architecture ({'; '.join(differ)})"
                         + ("; only a larger generator.ngf can start from it (widened, with "
                            "nearest upsampling and without QAT)"
                            if any(d.startswith("generator.ngf") for d in differ) else ""))
    if other.audio != config.audio:
        log.warning("--init_from %s was trained on other audio features (%s)", init_from,
                    other.audio)
    if wider:
        log.info("--init_from %s: its generator (ngf %d) is widened to ngf %d with the same "
                 "output (tf_melgan.widen)", init_from, other.generator.ngf,
                 config.generator.ngf)
    generator_only = path.endswith(".h5") or bool(other_d)
    if other_d and not differ:
        log.info("--init_from %s: its discriminators differ (%s); they start fresh",
                 init_from, "; ".join(other_d))
    return InitSource(path, other, config.generator.ngf, generator_only)


def _flat(config) -> dict:
    return {f"{section}.{name}": value for section, values in config.to_dict().items()
            for name, value in values.items()}


def _same_stats(a, b) -> bool:
    try:
        return a == b or (bool(a) and bool(b) and np.array_equal(np.load(a), np.load(b)))
    except (OSError, ValueError):
        return False


def check_resume_config(config, model_dir: str) -> list[str]:
    """When MODEL_DIR holds a trained model, compares `config` with the config.yaml it was
    trained with: raises TrainingError naming every architecture key that differs (its
    checkpoints could not be restored), else returns the other changed keys as
    "key: old -> new" (steps, learning rates, paths may change on resume). Writes nothing."""

    saved_path = os.path.join(model_dir, "config.yaml")
    trained = (tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints"))
               or os.path.isfile(os.path.join(model_dir, BEST_WEIGHTS)))
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
