"""The generator as a Keras model: a real .keras round trip, every variant."""

import keras
import numpy as np
import pytest

from tf_melgan.generator import Generator


@pytest.mark.parametrize("options", [{}, {"activation": "snake"}, {"upsampling": "nearest"}])
def test_keras_file_round_trip(tmp_path, options):
    keras.utils.set_random_seed(0)
    g = Generator(ngf=4, ratios=[4, 4], n_residual_layers=2, **options)
    g.build((None, None, 80))
    for s in g.snakes():  # away from the initial 1 so a lost weight would show
        s.set_weights([np.full(s.channels, 0.7, np.float32)])
    mel = np.random.default_rng(0).normal(-4, 1, (1, 12, 80)).astype(np.float32)
    path = str(tmp_path / "generator.keras")
    g.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded) is Generator and loaded.get_config() == g.get_config()
    np.testing.assert_array_equal(np.asarray(loaded(mel)), np.asarray(g(mel)))
