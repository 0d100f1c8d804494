"""Losses against the reference formulas written out in NumPy."""

import numpy as np

from tf_melgan.losses import (discriminator_loss, feature_matching_loss, generator_loss,
                              mel_l1)


def fake_outputs(rng, scales=3, layers=6):
    return [[rng.normal(size=(2, 10 + i, 3)).astype("float32") for i in range(layers)] +
            [rng.normal(size=(2, 5, 1)).astype("float32")] for _ in range(scales)]


def test_losses_match_formulas():
    rng = np.random.default_rng(0)
    real, fake = fake_outputs(rng), fake_outputs(rng)
    d_ref = sum(np.maximum(1 - r[-1], 0).mean() + np.maximum(1 + f[-1], 0).mean()
                for r, f in zip(real, fake))
    assert np.isclose(float(discriminator_loss(real, fake)), d_ref, rtol=1e-6)
    weight = (1 / 3) * (4 / (4 + 1))  # num_D = 3, n_layers_D = 4
    fm_ref = sum(weight * np.abs(a - b).mean()
                 for r, f in zip(real, fake) for a, b in zip(r[:-1], f[:-1]))
    adv_ref = sum(-f[-1].mean() for f in fake)
    assert np.isclose(float(feature_matching_loss(real, fake, 4)), fm_ref, rtol=1e-6)
    total, adv, fm = generator_loss(real, fake, n_layers=4, lambda_feat=10.0)
    assert np.isclose(float(adv), adv_ref, rtol=1e-6)
    assert np.isclose(float(total), adv_ref + 10 * fm_ref, rtol=1e-6)


def test_hinge_saturates():
    confident = [[np.full((1, 4, 1), 2.0, "float32")]]
    assert float(discriminator_loss(confident, [[-c[0] for c in confident]])) == 0.0


def test_mel_l1():
    a = np.zeros((1, 3, 4), "float32")
    assert np.isclose(float(mel_l1(a, a + 0.5)), 0.5)
