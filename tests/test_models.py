"""Generator and discriminator: shapes, parameter counts, PyTorch-equivalent resampling."""

import keras
import numpy as np
import pytest

from tf_melgan.discriminator import MultiScaleDiscriminator, avg_pool_exclude_pad
from tf_melgan.generator import Generator
from tf_melgan.convs import conv_layers


def test_paper_generator_parameter_count():
    g = Generator()  # n_mels 80, ngf 32, ratios 8/8/2/2, 3 residual layers
    g.build((None, None, 80))
    assert len(g.trainable_variables) == 126  # = official state_dict tensors (g, v, bias)
    assert g.count_params() == 4_266_050  # with weight-norm g
    assert g.folded().count_params() == 4_260_257  # the paper's / official count


def test_paper_discriminator_parameter_count():
    d = MultiScaleDiscriminator()
    d.build()
    assert len(d.trainable_variables) == 63
    assert d.count_params() == 16_924_086  # "16.9M" in the reference, g included
    shapes = [tuple(v.shape) for v in conv_layers(d.discriminators[0])[1].layer.weights]
    assert shapes[0] == (41, 4, 64)  # official layer_1.0.weight_v (64, 4, 41), groups 4


@pytest.mark.parametrize("ratios,frames", [([8, 8, 2, 2], 7), ([5, 5, 4, 3], 5), ([4, 4], 9)])
def test_generator_output_shape_and_range(ratios, frames):
    g = Generator(n_mels=20, ngf=4, ratios=ratios, n_residual_layers=2)
    hop = int(np.prod(ratios))
    mel = np.random.default_rng(0).normal(size=(3, frames, 20)).astype("float32") * 10
    audio = keras.ops.convert_to_numpy(g(mel))
    assert audio.shape == (3, frames * hop)
    assert np.all(np.abs(audio) <= 1.0)
    assert g.compute_output_shape((None, frames, 20)) == (None, frames * hop)


def test_folded_generator_matches_weight_normed_one():
    g = Generator(n_mels=16, ngf=4, ratios=[4, 4], n_residual_layers=2)
    g.build((None, None, 16))
    for v in g.trainable_variables:  # move g away from ||v|| so folding matters
        if v.path.endswith("/g"):
            v.assign(v * 1.5)
    mel = np.random.default_rng(1).normal(size=(2, 6, 16)).astype("float32")
    folded = g.folded()
    assert not folded.weight_norm
    assert folded.count_params() < g.count_params()
    np.testing.assert_allclose(keras.ops.convert_to_numpy(folded(mel)),
                               keras.ops.convert_to_numpy(g(mel)), atol=1e-6)


def test_generator_serializes():
    g = Generator(n_mels=16, ngf=4, ratios=[4, 4], n_residual_layers=1)
    clone = Generator.from_config(g.get_config())
    assert clone.get_config() == g.get_config()


def test_discriminator_feature_shapes():
    d = MultiScaleDiscriminator(num_scales=3, ndf=4, n_layers=4, max_channels=64)
    audio = np.random.default_rng(2).uniform(-1, 1, size=(2, 8192)).astype("float32")
    out = d(audio)
    assert len(out) == 3
    for scale, features in enumerate(out):
        length = 8192 // 2 ** scale
        assert len(features) == 7  # layer_0 .. layer_6
        expected = [(2, length, 4), (2, length // 4, 16), (2, length // 16, 64),
                    (2, length // 64, 64), (2, length // 256, 64), (2, length // 256, 64),
                    (2, length // 256, 1)]
        assert [tuple(f.shape) for f in features] == expected


def test_avg_pool_excludes_padding_like_pytorch():
    x = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0], "float32")
    # AvgPool1d(4, 2, padding=1, count_include_pad=False): windows over [0,1,2,3,4,5,6,0]
    expected = np.array([(1 + 2 + 3) / 3, (2 + 3 + 4 + 5) / 4, (4 + 5 + 6) / 3])
    y = keras.ops.convert_to_numpy(avg_pool_exclude_pad(x[None, :, None]))[0, :, 0]
    np.testing.assert_allclose(y, expected, rtol=1e-6)
