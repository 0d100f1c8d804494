"""MelGAN losses (hinge GAN + feature matching), as plain functions of discriminator outputs.

`outputs` arguments are what MultiScaleDiscriminator returns: per scale, a list of feature
maps whose last element is the score map.
"""

from __future__ import annotations

from keras import ops


def _f32(x):
    return ops.cast(x, "float32")


def discriminator_loss(real_outputs, fake_outputs):
    """sum over scales of mean(relu(1 - D(x))) + mean(relu(1 + D(G(s))))."""
    loss = 0.0
    for real, fake in zip(real_outputs, fake_outputs):
        loss += ops.mean(ops.relu(1.0 - _f32(real[-1]))) + ops.mean(ops.relu(1.0 + _f32(fake[-1])))
    return loss


def generator_adversarial_loss(fake_outputs):
    """sum over scales of -mean(D(G(s)))."""
    loss = 0.0
    for fake in fake_outputs:
        loss += -ops.mean(_f32(fake[-1]))
    return loss


def feature_matching_loss(real_outputs, fake_outputs, n_layers):
    """sum over scales and all layers but the last of
    (1 / num_D) * (4 / (n_layers + 1)) * mean|D_real - D_fake| (official weights).

    The real features are treated as constants."""
    weight = (1.0 / len(real_outputs)) * (4.0 / (n_layers + 1))
    loss = 0.0
    for real, fake in zip(real_outputs, fake_outputs):
        for r, f in zip(real[:-1], fake[:-1]):
            loss += weight * ops.mean(ops.abs(ops.stop_gradient(_f32(r)) - _f32(f)))
    return loss


def generator_loss(real_outputs, fake_outputs, n_layers, lambda_feat=10.0):
    """Returns (total, adversarial, feature_matching): total = adv + lambda_feat * fm."""
    adv = generator_adversarial_loss(fake_outputs)
    fm = feature_matching_loss(real_outputs, fake_outputs, n_layers)
    return adv + lambda_feat * fm, adv, fm


def mel_l1(mel_a, mel_b):
    """Mean absolute difference of two log-mels: the official model-selection criterion."""
    return ops.mean(ops.abs(_f32(mel_a) - _f32(mel_b)))
