"""tf_melgan.layers: reflection padding (every mode) against NumPy, Snake's formula, the
residual block's serialization."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_melgan.convs import WeightNormalization, conv1d
from tf_melgan.layers import ReflectionPad1D, ResidualBlock


def test_reflection_pad_matches_numpy():
    x = np.arange(2 * 10 * 3, dtype="float32").reshape(2, 10, 3)
    y = keras.ops.convert_to_numpy(ReflectionPad1D(3)(x))
    np.testing.assert_array_equal(y, np.pad(x, [(0, 0), (3, 3), (0, 0)], mode="reflect"))
    # Inside a graph with an unknown length too.
    fn = tf.function(ReflectionPad1D(3), input_signature=[tf.TensorSpec([2, None, 3])])
    np.testing.assert_array_equal(fn(x).numpy(), y)
    # Too short to reflect (needs more frames than it pads): an error, not a short output.
    with pytest.raises(tf.errors.InvalidArgumentError):
        fn(x[:, :3])


def test_layers_serialize_round_trip():
    block = ResidualBlock(8, 3, name="res")
    block.build((None, None, 8))
    x = np.random.default_rng(3).normal(size=(1, 30, 8)).astype("float32")
    restored = keras.layers.deserialize(keras.layers.serialize(block))
    assert restored.built  # Keras rebuilds from the saved build config
    restored.set_weights(block.get_weights())
    assert restored.get_config() == block.get_config()
    np.testing.assert_allclose(keras.ops.convert_to_numpy(restored(x)),
                               keras.ops.convert_to_numpy(block(x)), rtol=1e-6)
    wn = conv1d(4, 3, 8)
    clone = keras.layers.deserialize(keras.layers.serialize(wn))
    assert isinstance(clone, WeightNormalization) and clone.layer.get_config()["filters"] == 4


def test_snake_formula_and_folded_generator():
    import keras
    from tf_melgan.generator import Generator
    from tf_melgan.layers import Snake
    snake = Snake(3)
    snake.build((None, None, 3))
    alpha = np.array([0.5, 1.0, 3.0], np.float32)
    snake.set_weights([alpha])
    x = np.linspace(-4, 4, 30, dtype=np.float32).reshape(1, 10, 3)
    np.testing.assert_allclose(np.asarray(snake(x)), x + np.sin(alpha * x) ** 2 / alpha,
                               rtol=1e-5, atol=1e-6)
    assert Snake.from_config(snake.get_config()).channels == 3
    keras.utils.set_random_seed(0)
    g = Generator(ngf=4, ratios=[4, 4], n_residual_layers=2, activation="snake")
    g.build((None, None, 80))
    snakes = g.snakes()
    assert len(snakes) == 2 + 2 * 2 * 2 + 1  # before each upsampler, 2 per block, the last
    for i, s in enumerate(snakes):
        s.set_weights([np.full(s.channels, 0.5 + 0.1 * i, np.float32)])
    mel = np.random.default_rng(0).normal(-3, 1, (1, 12, 80)).astype(np.float32)
    folded = g.folded()
    np.testing.assert_allclose(np.asarray(folded(mel)), np.asarray(g(mel)), atol=1e-5)
    paper = Generator(ngf=4, ratios=[4, 4], n_residual_layers=2)
    paper.build((None, None, 80))
    assert paper.snakes() == [] and len(g.weights) == len(paper.weights) + len(snakes)


@pytest.mark.parametrize("mode", ["gather", "slices", "mirror_pad"])
def test_reflection_pad_modes_are_numpy_reflect(mode):
    x = np.random.default_rng(1).normal(size=(2, 9, 3)).astype(np.float32)
    layer = ReflectionPad1D(3, mode)
    want = np.pad(x, [(0, 0), (3, 3), (0, 0)], mode="reflect")
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer(x)), want)
    assert ReflectionPad1D.from_config(layer.get_config()).mode == mode
    with pytest.raises(ValueError, match="mode must be one of"):
        ReflectionPad1D(3, "wrap")
