"""tf_melgan.convs: WeightNormalization against PyTorch weight_norm(dim=0) written out in
NumPy, Conv1D against keras' Conv1D, the polyphase transposed conv against keras'."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_melgan.convs import (Conv1D, PolyphaseConv1DTranspose, WeightNormalization, conv1d,
                             conv1d_transpose)


def np_conv1d(x, w, b, stride=1, dilation=1, groups=1):
    """Cross-correlation, 'valid': x [T, Cin], w [k, Cin/groups, Cout] -> [T', Cout]."""
    k, cin_g, cout = w.shape
    cout_g = cout // groups
    span = (k - 1) * dilation + 1
    steps = (x.shape[0] - span) // stride + 1
    y = np.zeros((steps, cout))
    for t in range(steps):
        patch = x[t * stride: t * stride + span: dilation]  # [k, Cin]
        for g in range(groups):
            y[t, g * cout_g:(g + 1) * cout_g] = np.einsum(
                "ki,kio->o", patch[:, g * cin_g:(g + 1) * cin_g], w[:, :, g * cout_g:(g + 1) * cout_g])
    return y + b


def np_conv1d_transpose(x, w, b, stride):
    """PyTorch ConvTranspose1d, no padding: x [T, Cin], w [k, Cout, Cin] -> [(T-1)s + k, Cout]."""
    k, cout, _ = w.shape
    y = np.zeros(((x.shape[0] - 1) * stride + k, cout))
    for t in range(x.shape[0]):
        y[t * stride: t * stride + k] += np.einsum("i,koi->ko", x[t], w)
    return y + b


def torch_weight_norm_np(v, g):
    """PyTorch weight_norm(dim=0), computed in PyTorch's layout: Keras' Conv1D kernel
    (k, in, out) is torch's (out, in, k) reversed, Conv1DTranspose's (k, out, in) is
    torch's (in, out, k) reversed; dim 0 is out for the conv, in for the transpose."""
    vt = v.transpose(2, 1, 0)
    norm = np.sqrt((vt ** 2).reshape(vt.shape[0], -1).sum(axis=1)).reshape(-1, 1, 1)
    wt = g.reshape(-1, 1, 1) * vt / norm
    return wt.transpose(2, 1, 0)

@pytest.mark.parametrize("kind", ["conv", "transpose", "grouped", "dilated"])


def test_weight_norm_matches_formula(kind):
    rng = np.random.default_rng(0)
    cin, cout = 8, 12
    if kind == "transpose":
        layer = conv1d_transpose(cout, 6, 3)
    elif kind == "grouped":
        layer = conv1d(cout, 5, cin, strides=2, groups=4)
    elif kind == "dilated":
        layer = conv1d(cout, 3, cin, dilation_rate=3)
    else:
        layer = conv1d(cout, 7, cin)
    layer.build((None, None, cin))
    v = rng.normal(size=layer.layer.kernel.shape).astype("float32")
    g = rng.uniform(0.5, 2.0, size=layer.g.shape).astype("float32")
    b = rng.normal(size=layer.layer.bias.shape).astype("float32")
    layer.layer.kernel.assign(v)
    layer.g.assign(g)
    layer.layer.bias.assign(b)
    # g has one entry per output channel for Conv1D, per *input* channel for the transpose
    assert layer.g.shape == ((cin,) if kind == "transpose" else (cout,))
    w = torch_weight_norm_np(v.astype(np.float64), g)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer.normalized_kernel()), w,
                               rtol=1e-5, atol=1e-6)
    x = rng.normal(size=(2, 40, cin)).astype("float32")
    y = keras.ops.convert_to_numpy(layer(x))
    for i in range(2):
        if kind == "transpose":
            ref = np_conv1d_transpose(x[i], w, b, 3)
        elif kind == "grouped":
            ref = np_conv1d(x[i], w, b, stride=2, groups=4)
        elif kind == "dilated":
            ref = np_conv1d(x[i], w, b, dilation=3)
        else:
            ref = np_conv1d(x[i], w, b)
        np.testing.assert_allclose(y[i], ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("transpose", [False, True])


def test_wrapped_equals_bare_at_init_and_folds(transpose):
    layer = conv1d_transpose(6, 4, 2) if transpose else conv1d(6, 5, 4, groups=2)
    layer.build((None, None, 4))
    v = keras.ops.convert_to_numpy(layer.layer.kernel)
    norm = np.sqrt((v ** 2).sum(axis=(0, 1)))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer.g), norm, rtol=1e-6)
    x = np.random.default_rng(1).normal(size=(3, 20, 4)).astype("float32")
    wrapped = keras.ops.convert_to_numpy(layer(x))
    bare = keras.ops.convert_to_numpy(layer.layer(x))  # the inner layer, kernel = v
    np.testing.assert_allclose(wrapped, bare, rtol=1e-5, atol=1e-6)
    # After g moves away from ||v||, the folded plain layer still reproduces the wrapper.
    layer.g.assign(keras.ops.convert_to_numpy(layer.g) * np.linspace(0.5, 2, len(norm)))
    folded = layer.fold()
    assert not isinstance(folded, WeightNormalization)
    assert len(folded.weights) == 2
    np.testing.assert_allclose(keras.ops.convert_to_numpy(folded(x)),
                               keras.ops.convert_to_numpy(layer(x)), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kwargs, length, rtol, atol", [
    (dict(strides=1), 100, 1e-5, 1e-6),
    (dict(strides=1, dilation_rate=9), 100, 1e-5, 1e-6),
    (dict(strides=4), 100, 1e-5, 1e-6),
    (dict(strides=4, groups=4, kernel_size=41, filters=16), 300, 1e-4, 1e-5),
])


def test_conv_equals_keras_conv(kwargs, length, rtol, atol):
    # Ours runs tf.nn.conv1d with dilations + BiasAdd (faster, no SpaceToBatch), and grouped
    # convs as frame + einsum.
    kwargs = {"filters": 12, "kernel_size": 3, **kwargs}
    rng = np.random.default_rng(3)
    ours = Conv1D(bias_initializer="uniform", **kwargs)
    ref = keras.layers.Conv1D(**kwargs)
    ours.build((None, None, 8))
    ref.build((None, None, 8))
    ref.set_weights(ours.get_weights())
    x = rng.normal(size=(2, length, 8)).astype("float32")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(ours(x)),
                               keras.ops.convert_to_numpy(ref(x)), rtol=rtol, atol=atol)


def test_wraps_only_valid_convs():
    with pytest.raises(TypeError):
        WeightNormalization(keras.layers.Dense(3))
    with pytest.raises(ValueError, match="padding='valid'"):
        WeightNormalization(keras.layers.Conv1D(3, 3, padding="same"))


@pytest.mark.parametrize("ratio", [2, 3, 5, 8])
def test_polyphase_upsampler_equals_transposed_conv(ratio):
    layer = keras.layers.Conv1DTranspose(6, 2 * ratio, strides=ratio,
                                         bias_initializer="uniform")
    layer.build((None, None, 4))
    poly = PolyphaseConv1DTranspose.from_config(layer.get_config())
    poly.build((None, None, 4))
    poly.set_weights(layer.get_weights())
    x = np.random.default_rng(ratio).normal(size=(2, 17, 4)).astype(np.float32)
    ref = layer(x).numpy()
    assert ref.shape == (2, 18 * ratio, 6)
    np.testing.assert_allclose(poly(tf.constant(x)).numpy(), ref, atol=1e-5, rtol=0)
