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


def reference_stft_magnitude(x, n_fft, hop, win):
    """|STFT| as Parallel WaveGAN computes it, written with librosa: torch.stft(center=True)
    is a reflect pad of n_fft // 2, a win < n_fft Hann window is centred; power floored at 1e-7."""
    import librosa
    s = librosa.stft(x.astype(np.float64), n_fft=n_fft, hop_length=hop, win_length=win,
                     window="hann", center=True, pad_mode="reflect")
    return np.sqrt(np.maximum(np.abs(s) ** 2, 1e-7))


def test_multi_resolution_stft_loss_matches_parallel_wavegan():
    """Yamamoto et al. 2020, eq. 4-6, averaged over resolutions: spectral convergence is a
    Frobenius norm over the whole batch (as theirs), log-magnitude L1 a mean."""
    from tf_melgan.losses import multi_resolution_stft_loss
    rng = np.random.default_rng(0)
    t = np.arange(2 * 4096) / 22050
    real = (0.5 * np.sin(2 * np.pi * 220 * t) + 0.05 * rng.normal(size=t.size)).reshape(2, -1)
    fake = (0.3 * np.sin(2 * np.pi * 230 * t) + 0.1 * rng.normal(size=t.size)).reshape(2, -1)
    resolutions = [[1024, 120, 600], [2048, 240, 1200], [512, 50, 240]]
    sc_ref = mag_ref = 0.0
    for n_fft, hop, win in resolutions:
        f, r = (reference_stft_magnitude(x, n_fft, hop, win) for x in (fake, real))
        sc_ref += np.linalg.norm(r - f) / np.linalg.norm(r) / len(resolutions)
        mag_ref += np.mean(np.abs(np.log(r) - np.log(f))) / len(resolutions)
    total, sc, mag = multi_resolution_stft_loss(fake.astype("float32"), real.astype("float32"),
                                                resolutions)
    assert sc_ref > 0.1  # the two signals differ: far from 0 ...
    assert np.isclose(float(sc), sc_ref, rtol=2e-3)
    assert np.isclose(float(mag), mag_ref, rtol=2e-3)
    assert np.isclose(float(total), sc_ref + mag_ref, rtol=2e-3)
    same = multi_resolution_stft_loss(real.astype("float32"), real.astype("float32"), resolutions)
    assert float(same[0]) < 1e-5  # ... and 0 for identical ones


def test_phase_losses_match_apnets_formulas():
    from tf_melgan.losses import phase_losses
    rng = np.random.default_rng(0)
    fake, real = rng.uniform(-9, 9, (2, 6, 11)), rng.uniform(-np.pi, np.pi, (2, 6, 11))

    def aw(x):  # APNet's anti-wrapping function
        return np.abs(x - np.round(x / (2 * np.pi)) * 2 * np.pi)

    expected = (aw(fake - real).mean(),
                aw(np.diff(fake, axis=2) - np.diff(real, axis=2)).mean(),
                aw(np.diff(fake, axis=1) - np.diff(real, axis=1)).mean())
    ours = [float(v) for v in phase_losses(fake.astype(np.float32), real.astype(np.float32))]
    np.testing.assert_allclose(ours, expected, rtol=1e-5)
    # a whole turn away is no distance: phases live on the circle
    shifted = [float(v) for v in phase_losses((real + 4 * np.pi).astype(np.float32),
                                              real.astype(np.float32))]
    np.testing.assert_allclose(shifted, 0.0, atol=1e-5)
