"""tf_melgan.deploy.graph: the export generator (graph options chosen at build time) gives
the trained generator's numbers, with the ops asked for."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_melgan.deploy.graph import export_generator
from tf_melgan.generator import Generator
from tf_melgan.convs import PolyphaseConv1DTranspose, child_layers, conv_layers
from tf_melgan.layers import ReflectionPad1D


def _walk(layer):
    for sub in child_layers(layer):
        yield sub
        yield from _walk(sub)


@pytest.mark.parametrize("upsampling,pad_mode", [("transposed", "slices"),
                                                 ("transposed", "mirror_pad"),
                                                 ("nearest", "slices")])
def test_export_generator_equals_the_folded_generator(upsampling, pad_mode):
    keras.utils.set_random_seed(5)
    g = Generator(n_mels=16, ngf=4, ratios=[4, 2], n_residual_layers=2,
                  upsampling=upsampling, activation="snake")
    g.build((None, None, 16))
    mel = np.random.default_rng(0).normal(-2, 1, (1, 23, 16)).astype(np.float32)
    graph = export_generator(g, pad_mode)
    assert graph.get_config()["pad_mode"] == pad_mode and graph.polyphase
    pads = [layer for layer in _walk(graph) if isinstance(layer, ReflectionPad1D)]
    assert pads and all(p.mode == pad_mode for p in pads)
    polyphase = [c for c in conv_layers(graph) if isinstance(c, PolyphaseConv1DTranspose)]
    assert len(polyphase) == (2 if upsampling == "transposed" else 0)
    np.testing.assert_allclose(graph(tf.constant(mel)).numpy(), g(tf.constant(mel)).numpy(),
                               atol=1e-5, rtol=0)
