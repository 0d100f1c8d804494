"""UnivNet's multi-resolution spectrogram discriminator against a PyTorch reference of
UnivNet's DiscriminatorR (torch.stft magnitude, Conv2d stack), and its place in the GAN."""

import keras
import numpy as np
import pytest

from tf_melgan.config import ConfigError, load_config, validate
from tf_melgan.model import MelGAN
from tf_melgan.spectral_discriminator import (KERNELS, STRIDES,
                                              MultiResolutionSpectrogramDiscriminator,
                                              SpectrogramDiscriminator, magnitude)

torch = pytest.importorskip("torch", reason="PyTorch reference (pip install torch)")
F = torch.nn.functional


def reference_magnitude(x, n_fft, hop, win):
    """UnivNet's DiscriminatorR.spectrogram, [batch, bins, frames] -> [batch, frames, bins]."""
    pad = (n_fft - hop) // 2
    x = F.pad(torch.from_numpy(x)[:, None], (pad, pad), mode="reflect")[:, 0]
    spec = torch.stft(x, n_fft, hop, win, window=torch.hann_window(win, dtype=x.dtype),
                      center=False, return_complex=True)
    return spec.abs().transpose(1, 2).numpy()


@pytest.mark.parametrize("n_fft,hop,win,length", [(1024, 120, 600, 4000), (512, 50, 240, 1001)])
def test_magnitude_is_univnets_spectrogram(n_fft, hop, win, length):
    x = np.random.default_rng(0).uniform(-1, 1, (2, length))
    got = np.asarray(magnitude(x.astype(np.float32), n_fft, hop, win))
    want = reference_magnitude(x, n_fft, hop, win)
    assert got.shape == want.shape == (2, 1 + (length - hop) // hop, n_fft // 2 + 1)
    np.testing.assert_allclose(got, np.sqrt(np.maximum(want ** 2, 1e-7)), atol=2e-4, rtol=1e-4)


def test_conv_stack_matches_a_torch_conv2d_stack():
    keras.utils.set_random_seed(1)
    ours = SpectrogramDiscriminator(256, 32, 128, channels=4, weight_norm=False)
    ours.build()
    x = np.random.default_rng(2).uniform(-1, 1, (2, 2000)).astype(np.float32)
    h = torch.from_numpy(reference_magnitude(x.astype(np.float64), 256, 32, 128))[:, None]
    want = []
    for i, (layer, k, s) in enumerate(zip(ours.convs, KERNELS, STRIDES)):
        kernel, bias = layer.get_weights()  # [kt, kf, in, out] -> torch [out, in, kt, kf]
        w = torch.from_numpy(kernel.transpose(3, 2, 0, 1).astype(np.float64))
        h = F.conv2d(h, w, torch.from_numpy(bias.astype(np.float64)), stride=s,
                     padding=(k[0] // 2, k[1] // 2))
        if i < len(KERNELS) - 1:
            h = F.leaky_relu(h, 0.2)
        want.append(h.permute(0, 2, 3, 1).numpy())  # -> [batch, frames, bins, channels]
    got = ours(x)
    assert [tuple(g.shape) for g in got] == [w.shape for w in want]
    assert [g.shape[2] for g in got] == [129, 65, 33, 17, 17, 17]
    for g, w in zip(got, want):
        np.testing.assert_allclose(np.asarray(g), w, atol=2e-4, rtol=1e-3)


def test_weight_norm_starts_as_the_plain_stack():
    keras.utils.set_random_seed(3)
    mrsd = MultiResolutionSpectrogramDiscriminator(((256, 32, 128), (128, 16, 64)), channels=4)
    mrsd.build()
    assert mrsd.feature_layers == 4 and len(mrsd.discriminators) == 2
    x = np.random.default_rng(4).uniform(-1, 1, (1, 900)).astype(np.float32)
    for d, outs in zip(mrsd.discriminators, mrsd(x)):
        plain = SpectrogramDiscriminator(d.n_fft, d.hop, d.win, channels=4, weight_norm=False)
        plain.build()
        for wn, conv in zip(d.convs, plain.convs):
            conv.set_weights([np.asarray(wn.normalized_kernel()), wn.layer.get_weights()[1]])
        for f, g in zip(outs, plain(x)):
            np.testing.assert_allclose(np.asarray(f), np.asarray(g), atol=1e-5)


def _gan_config(*overrides):
    return load_config(None, ["generator.ngf=4", "generator.ratios=[4,4]", "audio.n_fft=64",
                              "audio.win_length=64", "audio.hop_length=16", "audio.n_mels=16",
                              "discriminator.num_scales=0",
                              "discriminator.spectrogram_resolutions=[[128,16,64]]",
                              "discriminator.spectrogram_channels=4", *overrides])


def test_the_gan_trains_it_and_the_generator_is_scored_by_it():
    """num_scales 0 leaves it the only discriminator: a D step moves its weights, and G's
    loss gets its hinge and feature-matching terms."""
    keras.utils.set_random_seed(5)
    config = _gan_config()
    validate(config)
    gan = MelGAN.from_config_dataclass(config)
    assert gan.discriminators == [gan.spectrogram_discriminator]
    gan.compile(keras.optimizers.Adam(1e-3), keras.optimizers.Adam(1e-3))
    mel = np.random.default_rng(6).normal(-2, 1, (2, 32, 16)).astype(np.float32)
    audio = np.random.default_rng(7).uniform(-0.5, 0.5, (2, 32 * 16)).astype(np.float32)
    before = [np.array(v.numpy()) for v in gan.spectrogram_discriminator.trainable_variables]
    logs = gan.train_step((mel, audio))
    after = [np.array(v.numpy()) for v in gan.spectrogram_discriminator.trainable_variables]
    # All but the score's bias: inside the hinge's margin its gradient is -1 + 1 = 0.
    assert all(np.any(a != b) for a, b in zip(after[:-1], before[:-1]))
    assert float(logs["feature_matching"]) > 0 and float(logs["d_loss"]) > 0


@pytest.mark.parametrize("override,message", [
    ("discriminator.spectrogram_resolutions=[[128,16]]", "spectrogram_resolutions\\[0\\]"),
    ("discriminator.spectrogram_resolutions=[[64,16,128]]", "win <= n_fft"),
    ("discriminator.spectrogram_resolutions=[]", "num_scales"),
])
def test_bad_spectrogram_discriminator_configs_are_refused(override, message):
    with pytest.raises(ConfigError, match=message):
        validate(_gan_config(override))
