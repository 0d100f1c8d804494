"""SavedModel export (round trip, TF Serving's loader, saved_model_cli) and the synthesis
CLI / API on model dirs, SavedModels and TFLite files, including its one-line errors."""

import json
import os
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest
import soundfile as sf
import tensorflow as tf

from tf_melgan import export
from tf_melgan.deploy import graph, saved_model
from tf_melgan.deploy.manifest import Manifest, manifest_for, read_manifest
from tf_melgan.audio import load_audio, log_mel_numpy
from tf_melgan.checkpoint import load_generator
from tf_melgan.builders import build_generator
from tf_melgan.config import config_from_dict
from tf_melgan.generator import Generator
from tf_melgan import synthesize as synthesize_module
from tf_melgan.synthesize import SynthesisError, main, load_vocoder, synthesize

TOL = 1e-5
PCM16 = 2.0 / 32768  # wav files hold 16-bit samples: rounding plus clipping at 1.0
SMALL = ["audio.n_fft=64", "audio.win_length=64", "audio.hop_length=16", "audio.n_mels=16",
         "generator.ratios=[4,4]", "generator.n_residual_layers=2", "generator.ngf=4"]


def make_model_dir(path, *overrides, seed=0):
    """A model dir as `train` leaves it (config.yaml + best_generator.weights.h5), with a
    tiny generator whose weight-norm gains are moved off ||v|| so folding matters."""
    config = config_from_dict({}, ["generator.ngf=8", *overrides])
    keras.utils.set_random_seed(seed)
    g = Generator.from_config_dataclass(config.generator, config.audio.n_mels, name="generator")
    g.build((None, None, config.audio.n_mels))
    for v in g.trainable_variables:
        if v.path.endswith("/g"):
            v.assign(v * np.random.default_rng(seed).uniform(0.5, 1.5, v.shape))
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "config.yaml"), "w") as f:
        f.write(config.to_yaml())
    g.save_weights(os.path.join(path, "best_generator.weights.h5"))
    return str(path), config, g


def mel_of(frames, n_mels=80, seed=0, batch=None):
    rng = np.random.default_rng(seed)
    shape = (frames, n_mels) if batch is None else (batch, frames, n_mels)
    return np.clip(rng.normal(-2.0, 1.2, shape), -5, 1).astype(np.float32)


def keras_audio(generator, mel):
    mel = mel if mel.ndim == 3 else mel[None]
    return keras.ops.convert_to_numpy(generator(mel))


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path, config, unfolded = make_model_dir(tmp_path_factory.mktemp("model"))
    folded, _ = load_generator(path)
    return {"dir": path, "config": config, "unfolded": unfolded, "folded": folded}


@pytest.fixture(scope="module")
def exported(model, tmp_path_factory):
    """The export CLI, run in-process."""
    out = str(tmp_path_factory.mktemp("export") / "saved")
    assert export.main(["export", "--model_dir", model["dir"], "--output", out]) == 0
    return out


def one_error_line(stderr):
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, stderr
    return errors[0]


# ------------------------------------------------------------------ SavedModel

def test_saved_model_round_trip(model, exported):
    loaded = tf.saved_model.load(exported)
    assert list(loaded.signatures) == ["serving_default"]
    fn = loaded.signatures["serving_default"]
    (name, spec), = fn.structured_input_signature[1].items()
    assert name == "mel" and spec.dtype == tf.float32
    assert spec.shape.as_list() == [None, None, 80]  # batch and frames dynamic
    assert list(fn.structured_outputs) == ["audio"]
    assert fn.structured_outputs["audio"].shape.as_list() == [None, None]
    for batch, frames in [(1, 4), (3, 17), (2, 50)]:
        mel = mel_of(frames, batch=batch, seed=frames)
        got = fn(mel=tf.constant(mel))["audio"].numpy()
        assert got.shape == (batch, frames * 256)
        assert np.max(np.abs(got - keras_audio(model["folded"], mel))) <= TOL
        assert np.max(np.abs(got - keras_audio(model["unfolded"], mel))) <= TOL
    with pytest.raises(tf.errors.InvalidArgumentError, match="at least 4 frames"):
        fn(mel=tf.constant(mel_of(3, batch=1)))


def test_export_carries_the_audio_config(model, exported):
    sidecar = os.path.join(exported, "assets", "tf_melgan.json")
    with open(sidecar) as f:
        meta = json.load(f)
    assert meta["audio"] == vars(model["config"].audio)
    assert meta["mel_recipe"]["name"] == "melgan" and meta["mel_recipe"]["center"] is False
    assert meta["generator"]["ratios"] == [8, 8, 2, 2] and meta["generator"]["hop_length"] == 256
    assert meta["receptive_field_frames"] == {"left": 6, "right": 6}
    assert meta["min_frames"] == 4 and meta["signature"]["input"] == "mel"
    # which generator: the model dir's best weights (no best.json here: no step, no score)
    assert meta["source"] == {"model_dir": os.path.abspath(model["dir"]), "which": "best",
                              "path": os.path.join(model["dir"], "best_generator.weights.h5"),
                              "step": None, "val_mel_l1": None}
    # a real SavedModel asset, not only a file in the folder
    loaded = tf.saved_model.load(exported)
    assert loaded.tf_melgan_config.asset_path.numpy().decode().endswith("tf_melgan.json")
    assert read_manifest(exported).to_dict() == meta


def test_saved_model_cli_run(model, exported, tmp_path):
    """`saved_model_cli run` loads through the TF1 session loader TF Serving uses (a plain
    tf.saved_model.save of a tf.Module fails there with TF 2.21). Its --input_exprs only
    takes Python literals in TF 2.21 (np.zeros(...) is rejected), so the input is a .npy."""
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    if not os.path.exists(cli):
        pytest.skip("saved_model_cli not installed")
    mel = mel_of(10, batch=1, seed=7)
    np.save(tmp_path / "mel.npy", mel)
    result = subprocess.run(
        [cli, "run", "--dir", exported, "--tag_set", "serve", "--signature_def",
         "serving_default", "--inputs", f"mel={tmp_path / 'mel.npy'}",
         "--outdir", str(tmp_path / "out"), "--overwrite"],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    got = np.load(tmp_path / "out" / "audio.npy")
    assert np.max(np.abs(got - keras_audio(model["folded"], mel))) <= TOL


def small_generator_and_config():
    config = config_from_dict({}, SMALL)
    keras.utils.set_random_seed(3)
    g = Generator.from_config_dataclass(config.generator, 16)
    g.build((None, None, 16))
    return g.folded(), config


def test_verifier_catches_a_tf_module_export(tmp_path):
    """The TF 2.21 trap: tf.saved_model.save of a tf.Module passes tf.saved_model.load but
    not TF Serving's loader; the export's check must catch it."""
    g, _ = small_generator_and_config()

    class Module(tf.Module):
        def __init__(self):
            super().__init__()
            self.g = g

        @tf.function(input_signature=[tf.TensorSpec([None, None, 16], tf.float32, name="mel")])
        def serve(self, mel):
            return {"audio": self.g(mel)}

    module = Module()
    tf.saved_model.save(module, str(tmp_path / "m"), signatures={"serving_default": module.serve})
    with pytest.raises(saved_model.ExportError, match="session loader"):
        saved_model.verify_saved_model(str(tmp_path / "m"), g, 16)


def test_export_never_leaves_a_broken_export(tmp_path, monkeypatch):
    g, config = small_generator_and_config()
    out = tmp_path / "out"
    path = saved_model.export_saved_model(g, out, config)
    assert path == str(out) and read_manifest(path).audio["n_mels"] == 16
    with pytest.raises(saved_model.ExportError, match="exists"):
        saved_model.export_saved_model(g, out, config)

    def broken(*args, **kwargs):
        raise saved_model.ExportError("differs from Keras by 1")

    monkeypatch.setattr(saved_model, "verify_saved_model", broken)
    with pytest.raises(saved_model.ExportError, match="differs"):
        saved_model.export_saved_model(g, tmp_path / "broken", config)
    assert sorted(os.listdir(tmp_path)) == ["out"]  # nothing new, no staging dir
    with pytest.raises(saved_model.ExportError, match="n_mels"):
        saved_model.export_saved_model(g, tmp_path / "x", config_from_dict({}, []))


def test_export_cli_errors_are_one_line(tmp_path, capsys):
    assert export.main(["export", "--model_dir", str(tmp_path / "nope"),
                            "--output", str(tmp_path / "o")]) == 1
    assert "no such model" in one_error_line(capsys.readouterr().err)
    (tmp_path / "empty").mkdir()
    assert export.main(["export", "--model_dir", str(tmp_path / "empty"),
                            "--output", str(tmp_path / "o")]) == 1
    assert "config.yaml" in one_error_line(capsys.readouterr().err)
    assert export.main(["export"]) == 2
    one_error_line(capsys.readouterr().err)


def test_export_to_a_read_only_place_is_one_line_naming_it(model, read_only_dir, capsys):
    out = read_only_dir / "saved"
    assert export.main(["export", "--model_dir", model["dir"], "--output", str(out)]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert line == f"error: {out}: Read-only file system" or "Permission denied" in line
    assert os.listdir(read_only_dir) == []


# ------------------------------------------------------------------ synthesis API

def to_tflite(saved_model_dir, path, sidecar_from):
    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir)
    with open(path, "wb") as f:
        f.write(converter.convert())
    shutil.copyfile(os.path.join(sidecar_from, "assets", "tf_melgan.json"),
                    os.path.splitext(path)[0] + ".json")
    return str(path)


def test_synthesize_api_on_every_model_kind(model, exported, tmp_path):
    pytest.importorskip("ai_edge_litert")
    mel = mel_of(23, seed=1)
    want = keras_audio(model["folded"], mel)[0]
    saved = load_vocoder(exported)
    for source in (model["dir"], saved, model["unfolded"]):
        got = synthesize(source, mel)
        assert got.shape == (23 * 256,) and np.max(np.abs(got - want)) <= TOL
    assert np.max(np.abs(synthesize(saved, mel[None], chunk_frames=5) - want)) <= TOL
    # TFLite with dynamic frames (the input is resized to [1, frames, n_mels])
    dynamic = to_tflite(exported, tmp_path / "dynamic.tflite", exported)
    vocoder = load_vocoder(dynamic)
    assert vocoder.fixed_frames is None and vocoder.sample_rate == 22050
    assert np.max(np.abs(synthesize(vocoder, mel) - want)) <= TOL
    # TFLite with a static [1, 5 + 2 * 6, n_mels] input: driven chunk by chunk
    archive = graph.serving_archive(model["folded"], 80, batch=1, frames=17,
                                     check_frames=False)
    archive.write_out(str(tmp_path / "fixed_sm"), verbose=False)
    fixed = load_vocoder(to_tflite(str(tmp_path / "fixed_sm"), tmp_path / "fixed.tflite",
                                   exported))
    assert fixed.fixed_frames == 17 and fixed.receptive_field.context == 6
    mel = mel_of(40, seed=2)
    got = synthesize(fixed, mel)
    assert np.max(np.abs(got - keras_audio(model["folded"], mel)[0])) <= TOL


# ------------------------------------------------------------------ synthesis CLI

def run_cli(python, *args):
    return subprocess.run([python, "-m", "tf_melgan.synthesize", *args], capture_output=True,
                          text=True, timeout=300, cwd=os.path.dirname(os.path.dirname(
                              os.path.abspath(__file__))))


def test_cli_copy_synthesis_of_a_wav(model, clip_path, tmp_path, capsys):
    """In-process (the folder test runs the real entry point on a wav and .npy files)."""
    out = tmp_path / "copy.wav"
    assert main(["synthesize", "--model", model["dir"], "--input", clip_path,
                     "--output", str(out)]) == 0
    audio, rate = sf.read(out, dtype="float32")
    mel = log_mel_numpy(load_audio(clip_path, 22050), model["config"].audio)
    assert rate == 22050 and audio.shape == (mel.shape[0] * 256,)
    assert np.max(np.abs(audio - keras_audio(model["folded"], mel)[0])) <= PCM16
    out = capsys.readouterr().out
    assert out.splitlines()[0] == (f"generator: best generator (step ?; not validated yet) of "
                                   f"{model['dir']}")
    assert f"({mel.shape[0]} frames" in out


def test_cli_folder_of_wav_and_npy(model, exported, clip_path, tmp_path, python):
    """The real entry point on a folder: a wav, two .npy layouts and one bad .npy, which
    gives one error line (no traceback; TensorFlow's C++ start-up lines may precede it)
    and exit status 1 while the others are written."""
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    audio, rate = sf.read(clip_path, dtype="float32")
    sf.write(src / "a.wav", audio[: rate], rate)  # 1 s
    mels = {"b.npy": mel_of(30, seed=3), "sub/c.npy": mel_of(9, seed=4)[None]}
    for name, mel in mels.items():
        np.save(src / name, mel)
    np.save(src / "d.npy", np.where(np.arange(80) == 5, np.nan, mel_of(12)))
    result = run_cli(python, "--model", exported, "--input", str(src), "--output",
                     str(tmp_path / "out"))
    assert result.returncode == 1, result.stderr[-2000:]
    assert "d.npy: contains NaN" in one_error_line(result.stderr)
    assert "synthesized 3 of 4 files" in result.stdout
    for name, mel in mels.items():
        got, _ = sf.read(tmp_path / "out" / name.replace(".npy", ".wav"), dtype="float32")
        assert np.max(np.abs(got - keras_audio(model["folded"], mel)[0])) <= PCM16
    assert os.path.isfile(tmp_path / "out" / "a.wav")
    assert not os.path.exists(tmp_path / "out" / "d.wav")
    # a clean folder exits 0 (in-process)
    os.remove(src / "d.npy")
    assert main(["synthesize", "--model", model["dir"], "--input", str(src), "--output",
                     str(tmp_path / "out2"), "--verbose", "0"]) == 0
    assert len(os.listdir(tmp_path / "out2")) == 3


def test_cli_single_npy_chunked(model, tmp_path, capsys):
    """In-process: a [1, frames, n_mels] .npy, synthesized in 4-frame chunks."""
    mel = mel_of(21, seed=5)[None]
    np.save(tmp_path / "m.npy", mel)
    assert main(["synthesize", "--model", model["dir"], "--input", str(tmp_path / "m.npy"),
                     "--output", str(tmp_path / "o.flac"), "--chunk_frames", "4"]) == 0
    got, rate = sf.read(tmp_path / "o.flac", dtype="float32")
    assert rate == 22050 and np.max(np.abs(got - keras_audio(model["folded"], mel)[0])) <= PCM16
    assert "21 frames" in capsys.readouterr().out


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory, clip_path):
    d = tmp_path_factory.mktemp("bad")
    rng = np.random.default_rng(0)
    good = np.clip(rng.normal(-2, 1, (20, 80)), -5, 1).astype(np.float32)
    arrays = {"transposed.npy": good.T, "int.npy": good.astype(np.int32),
              "short.npy": good[:3], "n_mels.npy": good[:, :64], "4d.npy": good[None, None],
              "nan.npy": np.where(np.arange(80) == 5, np.nan, good),
              "inf.npy": np.where(np.arange(80) == 5, np.inf, good),
              "complex.npy": good.astype(np.complex64), "good.npy": good}
    for name, array in arrays.items():
        np.save(d / name, array)
    np.save(d / "object.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    (d / "garbage.npy").write_bytes(b"hello, not numpy")
    (d / "empty.npy").write_bytes(b"")
    (d / "empty.tflite").write_bytes(b"")
    (d / "garbage.tflite").write_bytes(b"\0" * 64)
    (d / "fake.tflite").write_bytes(b"\0\0\0\0TFL3" + b"\0" * 64)
    (d / "notes.txt").write_text("hello")
    (d / "emptydir").mkdir()
    (d / "no_weights").mkdir()
    shutil.copyfile(clip_path, d / "clip.wav")
    return d


BAD_INPUTS = [("transposed.npy", "transpose it"), ("int.npy", "dtype int32"),
              ("complex.npy", "dtype complex64"), ("short.npy", "at least 4"),
              ("n_mels.npy", "64 mel bands"), ("4d.npy", "expected [frames, 80]"),
              ("nan.npy", "NaN"), ("inf.npy", "infinite"), ("object.npy", "Python objects"),
              ("garbage.npy", "not a .npy file"), ("empty.npy", "empty file"),
              ("notes.txt", "not a readable audio file"), ("missing.npy", "no such file")]


@pytest.fixture(scope="module")
def loaded_vocoder(model):
    return load_vocoder(model["dir"])


@pytest.mark.parametrize("name,message", BAD_INPUTS)
def test_cli_bad_input_is_one_line(model, loaded_vocoder, bad_files, tmp_path, capsys,
                                   monkeypatch, name, message):
    # the CLI as is, minus reloading the same model for every case
    monkeypatch.setattr(synthesize_module, "load_vocoder", lambda path, which: loaded_vocoder)
    code = main(["synthesize", "--model", model["dir"], "--input", str(bad_files / name),
                     "--output", str(tmp_path / "o.wav")])
    assert code != 0
    assert message in one_error_line(capsys.readouterr().err)
    assert not os.path.exists(tmp_path / "o.wav")


BAD_MODELS = [("missing", "no such model"), ("empty.tflite", "empty file"),
              ("garbage.tflite", "not a TFLite model"), ("fake.tflite", "not a valid TFLite"),
              ("notes.txt", "not a model"), ("clip.wav", "not a model"),
              ("emptydir", "neither a tf-melgan model dir"), ("good.npy", "not a model")]


@pytest.mark.parametrize("name,message", BAD_MODELS)
def test_cli_bad_model_is_one_line(bad_files, tmp_path, capsys, name, message):
    code = main(["synthesize", "--model", str(bad_files / name), "--input",
                     str(bad_files / "good.npy"), "--output", str(tmp_path / "o.wav")])
    assert code != 0
    assert message in one_error_line(capsys.readouterr().err)


def test_cli_model_dir_without_weights(model, bad_files, tmp_path, capsys):
    shutil.copyfile(os.path.join(model["dir"], "config.yaml"),
                    bad_files / "no_weights" / "config.yaml")
    assert main(["synthesize", "--model", str(bad_files / "no_weights"), "--input",
                     str(bad_files / "good.npy"), "--output", str(tmp_path / "o.wav")]) == 1
    assert "no checkpoint" in one_error_line(capsys.readouterr().err)
    assert main(["synthesize", "--model", model["dir"], "--input",
                     str(bad_files / "good.npy"), "--output", str(tmp_path / "o.mp4")]) == 1
    assert "must end in" in one_error_line(capsys.readouterr().err)
    assert main(["synthesize", "--model", model["dir"]]) == 2
    one_error_line(capsys.readouterr().err)
    with pytest.raises(SynthesisError, match="no such model"):
        load_vocoder(str(tmp_path / "nothing"))


def test_export_metadata_embeds_the_mel_normalisation(tmp_path):
    """A stats file's path does not travel with an export: its values do, in the json."""
    from tf_melgan.config import AudioConfig
    if "stats_path" not in AudioConfig.__dataclass_fields__:
        pytest.skip("this AudioConfig has no mel normalisation")
    stats = np.stack([np.linspace(-4, -1, 80), np.linspace(1, 2, 80)])
    np.save(tmp_path / "mel_stats.npy", stats)
    config = config_from_dict({}, ["generator.ngf=8"])
    config.audio.stats_path = str(tmp_path / "mel_stats.npy")
    meta = json.loads(manifest_for(config, build_generator(config)).to_json())
    assert meta["audio"]["stats_path"] is None
    assert np.allclose([meta["mel_stats"]["mean"], meta["mel_stats"]["std"]], stats)
    manifest = Manifest.from_dict(meta)
    assert manifest.hop == 256 and manifest.receptive_field().context == 6
    assert np.allclose(manifest.stats(), stats)
    assert not manifest.audio_config().stats_path
