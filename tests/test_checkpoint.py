"""tf_melgan.checkpoint: which generator of a model dir is used (best or latest, its step
and validation score), as export, convert.py and synthesize report it."""

import json
import os
import shutil

import pytest

from tf_melgan.checkpoint import GeneratorSource, ModelDirError, generator_source


@pytest.fixture
def model_dir(trained_run, tmp_path):
    """A copy of the tiny trained model dir (best at step 50, checkpoint ckpt-50)."""
    return shutil.copytree(trained_run["model_dir"], tmp_path / "model")


def best_json(model_dir):
    with open(os.path.join(model_dir, "best.json")) as f:
        return json.load(f)


def test_best_and_latest_of_a_trained_model_dir(model_dir):
    score = best_json(model_dir)["val_mel_l1"]
    best = generator_source(str(model_dir), "best")
    assert best == GeneratorSource("best", f"{model_dir}/best_generator.weights.h5", 50, score,
                                   (50, score))
    assert best.describe() == f"best generator (step 50, validation log-mel L1 {score:.4f})"
    latest = generator_source(str(model_dir), "latest")
    assert (latest.which, latest.path, latest.step) == ("latest",
                                                        f"{model_dir}/checkpoints/ckpt-50", 50)
    # The latest checkpoint is the best step here: its score is known.
    assert latest.describe() == f"latest checkpoint (step 50, validation log-mel L1 {score:.4f})"


def test_latest_past_the_best(model_dir):
    with open(model_dir / "best.json", "w") as f:
        json.dump({"val_mel_l1": 0.5, "step": 30}, f)
    assert generator_source(str(model_dir), "latest").describe() == (
        "latest checkpoint (step 50; the best is step 30, validation log-mel L1 0.5000)")


def test_best_falls_back_to_the_latest_checkpoint(model_dir):
    os.remove(model_dir / "best_generator.weights.h5")
    os.remove(model_dir / "best.json")
    source = generator_source(str(model_dir), "best")
    assert source.which == "latest" and source.step == 50
    assert source.describe() == "latest checkpoint (step 50; not validated yet)"
    shutil.rmtree(model_dir / "checkpoints")
    with pytest.raises(ModelDirError, match="has no checkpoint yet"):
        generator_source(str(model_dir), "best")


def test_weights_without_a_score(model_dir):
    os.remove(model_dir / "best.json")
    assert generator_source(str(model_dir)).describe() == "best generator (step ?; not " \
                                                          "validated yet)"
