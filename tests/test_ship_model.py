"""scripts/ship_model.py: the shipped weights are stored as float16 (half the bytes of the
arrays) and load back into the generator with its output intact."""

import os
import sys

import h5py
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "scripts"))

from ship_model import store_float16  # noqa: E402
from tf_melgan.atomic import TMP_PREFIX  # noqa: E402
from tf_melgan.generator import Generator  # noqa: E402


def test_float16_storage_keeps_the_output(tmp_path):
    g = Generator(ngf=16, n_mels=16, ratios=(4, 2), n_residual_layers=2,
                  activation="snake", upsampling="nearest")
    g.build((None, None, 16))
    mel = np.random.RandomState(0).randn(1, 30, 16).astype(np.float32)
    before = np.asarray(g(mel))
    path = str(tmp_path / "g.weights.h5")
    g.save_weights(path)
    with h5py.File(path, "r+") as f:  # a dataset attribute (Keras marks bfloat16 so) survives
        first = []
        f.visititems(lambda n, o: first.append(n) if isinstance(o, h5py.Dataset) else None)
        f[first[0]].attrs["marker"] = "kept"
    store_float16(path)
    with h5py.File(path, "r") as f:
        dtypes = set()
        f.visititems(lambda _, o: dtypes.add(o.dtype.name) if isinstance(o, h5py.Dataset)
                     else None)
        assert f[first[0]].attrs["marker"] == "kept"
    assert dtypes == {"float16"}
    assert not any(p.name.startswith(TMP_PREFIX) for p in tmp_path.iterdir())
    g.load_weights(path)
    after = np.asarray(g(mel))
    snr = 10 * np.log10(np.mean(before ** 2) / np.mean((before - after) ** 2))
    assert snr > 40.0, snr
