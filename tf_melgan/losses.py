"""MelGAN losses (hinge GAN + feature matching), as plain functions of discriminator outputs.

`outputs` arguments are what MultiScaleDiscriminator returns: per scale, a list of feature
maps whose last element is the score map.
"""

from __future__ import annotations

import numpy as np
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


def stft_magnitude(audio, n_fft, hop, win):
    """|STFT| of [batch, samples]: periodic Hann window of `win` samples, reflect-padded by
    n_fft // 2 (torch.stft(center=True) as Parallel WaveGAN calls it), floored at 1e-7 in
    power as theirs. [batch, frames, n_fft // 2 + 1]."""
    audio = _f32(audio)
    real, imag = ops.stft(audio, win, hop, n_fft, window="hann", center=True)
    return ops.sqrt(ops.maximum(real * real + imag * imag, 1e-7))


def multi_resolution_stft_loss(fake, real, resolutions):
    """Parallel WaveGAN's auxiliary loss (Yamamoto et al. 2020, eq. 4-6), averaged over
    resolutions [n_fft, hop, win]: spectral convergence ||S_real - S_fake||_F / ||S_real||_F
    (per batch, as theirs) + mean|log S_real - log S_fake|. Returns (total, sc, log_mag)."""
    sc, mag = 0.0, 0.0
    for n_fft, hop, win in resolutions:
        s_fake = stft_magnitude(fake, n_fft, hop, win)
        s_real = ops.stop_gradient(stft_magnitude(real, n_fft, hop, win))
        sc += ops.sqrt(ops.sum(ops.square(s_real - s_fake))) / ops.sqrt(ops.sum(ops.square(s_real)))
        mag += ops.mean(ops.abs(ops.log(s_real) - ops.log(s_fake)))
    sc, mag = sc / len(resolutions), mag / len(resolutions)
    return sc + mag, sc, mag


def anti_wrapped(x):
    """|x - 2 pi round(x / 2 pi)|: the distance of a phase difference to 0 on the circle."""
    return ops.abs(x - 2.0 * np.pi * ops.round(x / (2.0 * np.pi)))


def phase_losses(fake_phase, real_phase):
    """APNet's phase losses (Ai & Ling 2023, eq. 5-7) of [batch, frames, bins] phases:
    (instantaneous phase, group delay, instantaneous angular frequency), each the mean
    anti-wrapped difference of the phases, of their differences along frequency, along
    time."""
    fake, real = _f32(fake_phase), ops.stop_gradient(_f32(real_phase))
    ip = ops.mean(anti_wrapped(fake - real))
    gd = ops.mean(anti_wrapped(ops.diff(fake, axis=-1) - ops.diff(real, axis=-1)))
    iaf = ops.mean(anti_wrapped(ops.diff(fake, axis=-2) - ops.diff(real, axis=-2)))
    return ip, gd, iaf


def mel_l1(mel_a, mel_b):
    """Mean absolute difference of two log-mels: the official model-selection criterion."""
    return ops.mean(ops.abs(_f32(mel_a) - _f32(mel_b)))
