"""tf_melgan.fake_quant: the simulated int8 against LiteRT's reference formulas."""

import numpy as np
import tensorflow as tf

from tf_melgan import fake_quant


def reference_activation(x, lo, hi):
    """LiteRT's per-tensor asymmetric int8: scale (hi - lo) / 255, zero point
    round(-128 - lo / scale) in [-128, 127], q = clamp(round(x / scale) + zp)."""
    scale = (hi - lo) / 255.0
    zp = np.clip(np.round(-128 - lo / scale), -128, 127)
    q = np.clip(np.round(x / scale) + zp, -128, 127)
    return (q - zp) * scale


def test_kernel_is_per_channel_symmetric_int8():
    w = np.random.default_rng(0).normal(size=(7, 5, 3)).astype(np.float32)
    w[..., 1] *= 0.01  # channels of different scales keep their own
    scale = np.abs(w).max(axis=(0, 1)) / 127.0
    expected = np.clip(np.round(w / scale), -127, 127) * scale
    np.testing.assert_allclose(fake_quant.quantize_kernel(tf.constant(w)).numpy(), expected,
                               rtol=0, atol=1e-6 * np.abs(w).max())


def test_activation_and_constant_match_the_int8_formula():
    rng = np.random.default_rng(1)
    x = rng.normal(size=10000).astype(np.float32) * 3
    lo, hi = -4.2, 6.3
    q = fake_quant.ActivationQuantizer(lo, hi)
    got = q(tf.constant(x)).numpy()
    want = reference_activation(x, lo, hi)
    # fake_quant nudges the range so 0 is exact (as LiteRT); ties may round the other way
    step = (hi - lo) / 255
    assert np.mean(np.abs(got - want) < 1e-5) > 0.999
    assert np.max(np.abs(got - want)) <= step + 1e-6
    assert np.all(got >= lo - step) and np.all(got <= hi + step)
    a = rng.uniform(0.2, 1.5, size=16).astype(np.float32)  # Snake's alpha: lo = 0
    np.testing.assert_allclose(fake_quant.quantize_constant(tf.constant(a)).numpy(),
                               reference_activation(a, 0.0, a.max()), atol=1e-6)


def test_straight_through_gradient():
    x = tf.constant([-9.0, -1.0, 0.3, 2.0, 9.0])
    q = fake_quant.ActivationQuantizer(-4.0, 4.0)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = q(x)
    np.testing.assert_array_equal(tape.gradient(y, x).numpy(), [0, 1, 1, 1, 0])
