"""tf_melgan.deploy.manifest: the one manifest of every export, its writer and its reader
(new and older layouts, every place an export's manifest is looked for)."""

import json
import os
import subprocess

import numpy as np
import pytest

from conftest import ROOT
from tf_melgan.builders import build_generator
from tf_melgan.config import config_from_dict
from tf_melgan.deploy.manifest import (SIDECAR, Manifest, ManifestError, manifest_for,
                                       read_manifest, sidecar_path)


def _built(config):
    return config, build_generator(config)


def test_written_fields_round_trip_and_derive_the_architecture():
    config = config_from_dict({}, ["generator.ratios=[8,8,4]", "audio.hop_length=256",
                                   "generator.n_residual_layers=2"])
    manifest = manifest_for(config, build_generator(config))
    d = json.loads(manifest.to_json())
    assert list(d)[:4] == ["format", "format_version", "tf_melgan_version", "audio"]
    assert "file" not in d and "quantization" not in d  # a SavedModel's: no file fields
    assert d["generator"] == {"head": "waveform", "ngf": config.generator.ngf,
                              "ratios": [8, 8, 4], "n_residual_layers": 2,
                              "upsampling": "transposed", "activation": "leaky_relu",
                              "hop_length": 256}
    assert Manifest.from_dict(d).to_dict() == d
    again = Manifest.from_dict(d)
    assert again.hop == 256 and again.audio_config() == config.audio
    # dilations 1 + 3 after each upsampler, pre and post k7 convs (test_streaming's formula)
    from tf_melgan.streaming import receptive_field
    field, derived = again.receptive_field(), receptive_field(config)
    assert (field.left, field.right) == (derived.left, derived.right)


def test_tflite_fields_are_kept_even_when_null():
    config = config_from_dict({}, [])
    d = manifest_for(config, build_generator(config), file="tflite", quantization="float32",
                     calibration=None).to_dict()
    assert d["file"] == "tflite" and d["quantization"] == "float32"
    assert "calibration" in d and d["calibration"] is None


def test_an_older_converter_sidecar_reads(tmp_path):
    """What tflite/convert.py wrote before the manifest had a type: no 'generator' in the
    oldest ones (the receptive field from its frames), the hop at the top level."""
    old = {"format": "tf_melgan", "audio": vars(config_from_dict({}, []).audio),
           "file": "tflite", "hop_length": 256, "n_mels": 80, "quantization": "int8",
           "receptive_field_frames": {"left": 6, "right": 5}, "signature": "serving_default",
           "smoke_tolerance": {"max_abs_diff": None, "min_snr_db": 12.5}, "extra": 1}
    (tmp_path / "v.json").write_text(json.dumps(old))
    m = read_manifest(str(tmp_path / "v.tflite"))
    assert m.hop == 256 and m.signature_name == "serving_default"
    assert (m.receptive_field().left, m.receptive_field().right) == (6, 5)
    assert m.smoke_tolerance["min_snr_db"] == 12.5 and m.stats() is None


@pytest.mark.parametrize("where", ["assets", "dir", "stem", "full", "folder"])
def test_reader_finds_every_placement(tmp_path, where):
    text = manifest_for(*_built(config_from_dict({}, ["audio.n_mels=64"]))).to_json()
    saved = tmp_path / "sm"
    (saved / "assets").mkdir(parents=True)
    target = {"assets": saved / "assets" / SIDECAR, "dir": saved / SIDECAR,
              "stem": tmp_path / "v.json", "full": tmp_path / "v.tflite.json",
              "folder": tmp_path / SIDECAR}[where]
    target.write_text(text)
    path = str(saved) if where in ("assets", "dir") else str(tmp_path / "v.tflite")
    assert read_manifest(path).audio["n_mels"] == 64
    assert sidecar_path(str(tmp_path / "v.tflite")) == str(tmp_path / "v.json")


def test_reader_none_or_one_error(tmp_path):
    assert read_manifest(str(tmp_path / "v.tflite")) is None
    (tmp_path / "v.json").write_text("{not json")
    with pytest.raises(ManifestError, match="not a valid manifest"):
        read_manifest(str(tmp_path / "v.tflite"))
    (tmp_path / "v.json").write_text("[1, 2]")
    with pytest.raises(ManifestError, match="no 'audio'"):
        read_manifest(str(tmp_path / "v.tflite"))


def test_embedded_stats_shape_is_checked():
    d = manifest_for(*_built(config_from_dict({}, []))).to_dict()
    d["mel_stats"] = {"mean": [0.0] * 79, "std": [1.0] * 79}
    with pytest.raises(ManifestError, match="shape"):
        Manifest.from_dict(d).stats()
    d["mel_stats"] = {"mean": list(np.zeros(80)), "std": list(np.ones(80))}
    assert Manifest.from_dict(d).stats().shape == (2, 80)


def test_deploy_runtime_imports_no_tensorflow(python):
    code = ("import sys, tf_melgan.deploy.manifest, tf_melgan.deploy.vocoder, "
            "tf_melgan.smoke_test\n"
            "bad = [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'yaml')]\n"
            "assert not bad, bad[:5]")
    r = subprocess.run([python, "-c", code], cwd=ROOT, capture_output=True, text=True,
                       timeout=120, env={**os.environ, "PYTHONPATH": ROOT})
    assert r.returncode == 0, r.stderr[-2000:]


@pytest.mark.parametrize("overrides,frames", [
    (["generator.upsampling=nearest"], 7),  # not the transposed convs' 6 (issue 31)
    (["generator.head=fourier", "generator.dim=16", "generator.n_blocks=2"], 11)])
def test_receptive_field_is_the_built_models(overrides, frames):
    config, generator = _built(config_from_dict({}, overrides))
    manifest = Manifest.from_dict(json.loads(manifest_for(config, generator).to_json()))
    assert manifest.receptive_field().context == generator.receptive_field.context == frames
