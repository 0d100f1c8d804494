"""The multi-period discriminator against a PyTorch reference of HiFi-GAN's DiscriminatorP."""

import keras
import numpy as np
import pytest

from tf_melgan.discriminator import MultiPeriodDiscriminator, PeriodDiscriminator

torch = pytest.importorskip("torch", reason="PyTorch reference (pip install torch)")


@pytest.mark.parametrize("period,length", [(2, 600), (3, 601), (5, 603), (11, 700)])
def test_period_discriminator_matches_hifigan(period, length):
    from torch_melgan import DiscriminatorP
    keras.utils.set_random_seed(period)
    ours = PeriodDiscriminator(period, channels=2, weight_norm=False)
    ours.build()
    ref = DiscriminatorP(period, channels=(2, 8, 32, 64, 64)).double()
    convs = list(ref.convs) + [ref.conv_post]
    assert len(convs) == len(ours.convs)
    for conv, layer in zip(convs, ours.convs):
        kernel, bias = layer.get_weights()  # [k, in, out]
        conv.weight.data = torch.from_numpy(kernel.transpose(2, 1, 0)[..., None].astype(np.float64))
        conv.bias.data = torch.from_numpy(bias.astype(np.float64))
    x = np.random.default_rng(0).uniform(-1, 1, (2, length)).astype(np.float32)
    got = ours(x[..., None])
    want = ref(torch.from_numpy(x[:, None].astype(np.float64)))
    assert len(got) == len(want) == 6
    for g, w in zip(got, want):
        w = w.detach().numpy()  # [B, C, T', p] -> ours [B * p, T', C]
        b, c, t, p = w.shape
        w = w.transpose(0, 3, 2, 1).reshape(b * p, t, c)
        np.testing.assert_allclose(np.asarray(g), w, atol=1e-5)


def test_multi_period_discriminator_layout_and_weight_norm():
    keras.utils.set_random_seed(0)
    mpd = MultiPeriodDiscriminator(periods=[2, 3], channels=2)
    mpd.build()
    plain = MultiPeriodDiscriminator(periods=[2, 3], channels=2, weight_norm=False)
    plain.build()
    for d_wn, d_plain in zip(mpd.discriminators, plain.discriminators):
        for wn, conv in zip(d_wn.convs, d_plain.convs):
            conv.set_weights([np.asarray(wn.normalized_kernel()), wn.layer.get_weights()[1]])
    x = np.random.default_rng(1).uniform(-1, 1, (2, 300)).astype(np.float32)
    outs, ref = mpd(x), plain(x)
    assert [len(o) for o in outs] == [6, 6]
    # channels 2 * (1, 4, 16, 32, 32), then the score; lengths ceil(T / p) / 3^k
    assert [o.shape[-1] for o in outs[0]] == [2, 8, 32, 64, 64, 1]
    assert [o.shape[:2] for o in outs[1]][0] == (6, 34)
    for a, b in zip(outs, ref):  # weight norm starts as the identity (g = ||v||)
        for f, g in zip(a, b):
            np.testing.assert_allclose(np.asarray(f), np.asarray(g), atol=1e-5)
    # HiFi-GAN's widths at channels 32: 32, 128, 512, 1024, 1024; capped by max_channels
    capped = PeriodDiscriminator(2, channels=32, max_channels=512)
    assert [c.layer.filters for c in capped.convs] == [32, 128, 512, 512, 512, 1]
