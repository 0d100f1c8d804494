"""Vocoders shipped inside the package, addressable by name wherever a model dir is taken.

Each is a model dir of its own (config.yaml, best_generator.weights.h5, best.json) below
this folder, plus card.json: what it was trained on, for how long, and its held-out scores
(the model cards in docs/MODELS.md, summed up in the README, say the same); a
quantization-aware one (training.qat) also qat_ranges.json, the int8 ranges the converter
then uses (tf_melgan.qat). A float one may carry its int8 form in int8/ (a QAT model dir,
with the ready .tflite): `--quantize` converts that.
"""

from __future__ import annotations

import os

HERE = os.path.dirname(os.path.abspath(__file__))
NAMES = ("ljspeech", "ljspeech_large", "universal_16k")


def shipped_help() -> str:
    """How a CLI's --help names the shipped vocoders (from NAMES, so it stays true)."""
    return f"a shipped vocoder's name ({', '.join(NAMES)})"


def no_such_model(model: str) -> str:
    """Every CLI's one wording for a model that is not there."""
    return (f"{model}: no such model (neither a file, a folder nor a shipped vocoder's "
            f"name: {', '.join(NAMES)})")


def path(name: str) -> str:
    """The model dir of a shipped vocoder."""
    if name not in NAMES:
        raise KeyError(f"no shipped vocoder named '{name}' (shipped: {', '.join(NAMES)})")
    return os.path.join(HERE, name)


def portable(path: str) -> str:
    """`path` made absolute, except below this folder: 'tf_melgan/pretrained/...', so that
    what an export of a shipped vocoder records does not name the machine it was made on."""
    path = os.path.abspath(path)
    if path == HERE or path.startswith(HERE + os.sep):
        return os.path.join("tf_melgan", "pretrained", os.path.relpath(path, HERE))
    return path


def resolve(model: str) -> str:
    """`model` itself when it exists on disk, else the model dir of the shipped vocoder of
    that name; an unknown name is returned as is (the caller's 'no such dir' error names it)."""
    model = os.fspath(model)
    if os.path.exists(model) or model not in NAMES:
        return model
    return path(model)
