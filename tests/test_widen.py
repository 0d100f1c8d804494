"""tf_melgan.widen: a generator grown to a larger ngf computes what the narrower one did,
and training can move every added weight."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_melgan.generator import Generator

OPTIONS = dict(n_mels=16, ratios=(4, 2), n_residual_layers=2, activation="snake",
               upsampling="nearest")


def generator(ngf, seed, **options):
    keras.utils.set_random_seed(seed)  # the added channels' init depends on it
    g = Generator(ngf=ngf, **{**OPTIONS, **options})
    g.build((None, None, 16))
    for s in g.snakes():  # trained-looking a, so that a lost or moved one would show
        s.alpha.assign(np.linspace(0.5, 2.0, s.channels).astype(np.float32))
    return g


def test_widened_generator_computes_the_same_waveform():
    from tf_melgan.widen import widen_into
    small, large = generator(4, 1), generator(8, 2)
    mel = np.random.RandomState(0).randn(2, 12, 16).astype(np.float32)
    before = np.asarray(large(mel))
    widen_into(small, large)
    np.testing.assert_allclose(np.asarray(large(mel)), np.asarray(small(mel)), atol=1e-6)
    assert np.abs(before - np.asarray(small(mel))).max() > 1e-3  # the copy did something
    # added channels carry signal (their own init), so the zeros into kept ones can learn
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.square(large(mel)))
    v = large.conv_post.layer.kernel  # [7, 8 in, 1 out]: inputs 4..7 are added
    grad = tape.gradient(loss, v).numpy()
    assert np.all(v.numpy()[:, 4:, :] == 0.0)
    assert np.abs(grad[:, 4:, :]).min() > 0.0
    assert large.ngf == 8 and len(large.weights) == len(small.weights)


@pytest.mark.parametrize("small_opts, large_opts, match", [
    ({}, {"activation": "leaky_relu"}, "different activation"),
    ({"upsampling": "transposed"}, {"upsampling": "transposed"}, "nearest"),
])
def test_refuses_what_it_cannot_widen(small_opts, large_opts, match):
    from tf_melgan.widen import widen_into
    with pytest.raises(ValueError, match=match):
        widen_into(generator(4, 1, **small_opts), generator(8, 2, **large_opts))
    with pytest.raises(ValueError, match="cannot widen ngf 8 into ngf 4"):
        widen_into(generator(8, 1), generator(4, 2))
