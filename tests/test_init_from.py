"""--init_from: a new model dir starts G and D from another model dir's checkpoint."""

import numpy as np
import pytest
import tensorflow as tf

from conftest import FAST
from tf_melgan.errors import TrainingError
from tf_melgan.model import MelGAN
from tf_melgan.resume import init_checkpoint
from tf_melgan.trainer import run

OVERRIDES = ["training.steps=1", *FAST]


def trained_weights(model_dir, config):
    """G's and D's weights from the latest checkpoint of a model dir, in model order."""
    from tf_melgan.checkpoint import restore_weights
    gan = MelGAN.from_config_dataclass(config)
    restore_weights(tf.train.latest_checkpoint(str(model_dir / "checkpoints")),
                    generator=gan.generator, discriminator=gan.discriminator)
    return [v.numpy() for v in gan.generator.weights + gan.discriminator.weights]


def test_init_from_copies_generator_and_discriminator(tiny_config, tmp_path):
    source, target = tmp_path / "source", tmp_path / "target"
    run(tiny_config(*OVERRIDES, "training.seed=1"), str(source), verbose=0)
    summary = run(tiny_config(*OVERRIDES, "training.seed=2"), str(target), verbose=0,
                  init_from=str(source))
    assert summary["step"] == 1  # optimizers and step start fresh
    config = tiny_config(*OVERRIDES)
    before, after = trained_weights(source, config), trained_weights(target, config)
    assert len(before) == len(after) > 100
    # one Adam step (lr 1e-4) away from the source, not from seed 2's random init
    worst = max(np.abs(a - b).max() for a, b in zip(before, after))
    assert worst < 2e-4, worst


def test_init_from_other_discriminators_takes_the_generator(tiny_config, tmp_path):
    """A GAN phase after a generator-only one: other discriminators than the source's are
    no refusal; G comes from the checkpoint and the discriminators start fresh."""
    from conftest import make_trained_dir
    target = tmp_path / "target"
    source = make_trained_dir(tmp_path / "source", tiny_config(*OVERRIDES, "training.seed=1"))
    config = tiny_config(*OVERRIDES, "training.seed=2", "discriminator.periods=[2]")
    assert init_checkpoint(config, source).generator_only
    assert not init_checkpoint(tiny_config(*OVERRIDES), source).generator_only
    run(config, str(target), verbose=0, init_from=source)
    n_generator = len(MelGAN.from_config_dataclass(config).generator.weights)
    # G's weights, then the multi-scale D's (the same architecture in both)
    before = trained_weights(tmp_path / "source", tiny_config(*OVERRIDES))
    after = trained_weights(target, config)
    g_worst = max(np.abs(a - b).max() for a, b in zip(before[:n_generator], after))
    d_worst = max(np.abs(a - b).max() for a, b in zip(before[n_generator:],
                                                    after[n_generator:]))
    assert g_worst < 2e-4 < d_worst  # G one Adam step from the source; D seed 2's init


def test_init_from_refuses_another_architecture(tiny_config, tmp_path):
    """What train --init_from starts from (tf_melgan.resume.init_checkpoint, which run()
    calls before building anything): a model dir of another architecture, or without a
    checkpoint, is refused with one line."""
    from conftest import make_trained_dir
    source = make_trained_dir(tmp_path / "source", tiny_config(*OVERRIDES))
    assert init_checkpoint(tiny_config(*OVERRIDES), source).path.endswith("ckpt-0")
    with pytest.raises(TrainingError, match="different architecture.*generator.ngf: 8 there, 16 here"):
        init_checkpoint(tiny_config(*OVERRIDES, "generator.ngf=16"), source)
    with pytest.raises(TrainingError, match="no checkpoint"):
        init_checkpoint(tiny_config(*OVERRIDES), str(tmp_path / "nowhere"))


def test_init_from_a_narrower_generator_widens_it(tiny_config, tmp_path):
    """--init_from a model with a smaller generator.ngf (nearest upsampling): the run's
    generator starts from the same waveform (tf_melgan.widen), the discriminators as well."""
    from tf_melgan.checkpoint import load_generator
    source, target = tmp_path / "source", tmp_path / "target"
    opts = [*OVERRIDES, "generator.activation=snake", "generator.upsampling=nearest",
            "g_optimizer.learning_rate=1e-9", "d_optimizer.learning_rate=1e-9"]
    run(tiny_config(*opts, "training.seed=1"), str(source), verbose=0)
    run(tiny_config(*opts, "training.seed=2", "generator.ngf=16"), str(target), verbose=0,
        init_from=str(source))
    narrow, _ = load_generator(str(source), which="latest")
    wide, config = load_generator(str(target), which="latest")
    assert (narrow.ngf, wide.ngf, config.generator.ngf) == (8, 16, 16)
    mel = np.random.RandomState(0).randn(1, 10, 80).astype(np.float32) - 3.0
    np.testing.assert_allclose(np.asarray(wide(mel)), np.asarray(narrow(mel)), atol=1e-5)
    # the discriminators come from the source's checkpoint too (the last weights: D's)
    d_source = trained_weights(source, tiny_config(*opts))[-20:]
    d_target = trained_weights(target, config)[-20:]
    assert max(np.abs(a - b).max() for a, b in zip(d_source, d_target)) < 1e-6
