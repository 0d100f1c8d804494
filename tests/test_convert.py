"""The LiteRT converter (tf_melgan.convert, tf_melgan.deploy.convert) and the TF-free smoke
test (tf_melgan.smoke_test, tf_melgan.deploy.litert; here, as it needs converted models):
conversion in each mode against the Keras model, the op check that catches TF 2.21's
weightless conversions, refusal of NaN / silent models, and tflite/smoke_test.py run from
a venv that has no TensorFlow at all."""

import errno
import json
import os
import re
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest

pytest.importorskip("ai_edge_litert", reason="ai-edge-litert not installed (pip install "
                                             "-e '.[litert]')")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import tensorflow as tf  # noqa: E402

from conftest import cli_env  # noqa: E402

from tf_melgan.audio import load_audio, log_mel_numpy  # noqa: E402
from tf_melgan.checkpoint import load_generator  # noqa: E402
from tf_melgan.config import config_from_dict  # noqa: E402
from tf_melgan.generator import Generator  # noqa: E402
from tf_melgan import convert as convert_cli  # noqa: E402
from tf_melgan.deploy import convert as conv  # noqa: E402
from tf_melgan.deploy.convert import checks, quantize, ranges  # noqa: E402
from tf_melgan.deploy.convert import data as clips  # noqa: E402
from tf_melgan.deploy.litert import LiteRTModel as Vocoder  # noqa: E402
from tf_melgan.deploy.litert import VARIABLE_OPS, op_counts, op_problems, read_ops, snr_db  # noqa: E402
from tf_melgan.deploy.manifest import INPUT_NAME, read_manifest  # noqa: E402

SMOKE = os.path.join(ROOT, "tflite", "smoke_test.py")


def read_sidecar(path):
    """The .tflite's manifest as the JSON it is written as."""
    return read_manifest(path).to_dict()
# Small: 2 residual layers per stage (dilations 1, 3: the dilated-conv path is exercised).
TINY_OVERRIDES = ["generator.ngf=8", "generator.n_residual_layers=2",
                  "data.validation_clips=2"]
FAST = dict(num_validation=2, validation_frames=96, num_calibration=6, calibration_frames=48)
# Floors for the tiny random-init model (see _audible; measured: fp16 44.5 dB, int8 14.6 dB;
# the trained demo model: fp16 63.5 dB, int8 22 dB).
INT8_MIN_SNR_DB = 10.0
FP16_MIN_SNR_DB = 35.0
FP32_ATOL = 1e-5
BEST = {"val_mel_l1": 1.2345, "step": 7}  # what training would have recorded
GENERATOR_LINE = "generator: best generator (step 7, validation log-mel L1 1.2345) of {}"


def make_model_dir(path, audio_dir, edit=None):
    """A model dir as training leaves it: config.yaml + best_generator.weights.h5 (a
    weight-normed generator; load_generator folds it)."""
    config = config_from_dict({}, TINY_OVERRIDES + [f"data.path={audio_dir}"])
    keras.utils.set_random_seed(3)
    generator = Generator.from_config_dataclass(config.generator, config.audio.n_mels)
    generator.build((None, None, config.audio.n_mels))
    if edit:
        edit(generator)
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "config.yaml"), "w") as f:
        f.write(config.to_yaml())
    generator.save_weights(os.path.join(path, "best_generator.weights.h5"))
    with open(os.path.join(path, "best.json"), "w") as f:
        json.dump(BEST, f)
    return str(path)


def _audible(mel):
    """At random init the output is nearly constant (about 0.17 +- 0.004: the biases' DC),
    which int8's 1/128 output step would swamp and any SNR would mostly measure the DC.
    Rescale conv_post (w = g v / |v| and its bias) so the output on real mels is zero-mean
    with std ~0.3, like speech; everything upstream stays random."""

    def edit(generator):
        post = generator.conv_post
        pre = np.arctanh(np.clip(generator(tf.constant(mel)).numpy(), -0.999, 0.999))
        k = 0.3 / pre.std()
        bias = post.layer.bias.numpy()
        post.g.assign(post.g.numpy() * k)
        post.layer.bias.assign(k * (bias - pre.mean()))

    return edit


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, audio_dir, clip_path):
    config = config_from_dict({}, [f"data.path={audio_dir}"]).audio
    mel = log_mel_numpy(load_audio(clip_path, config.sample_rate)[:200 * config.hop_length],
                        config)[None]
    return make_model_dir(tmp_path_factory.mktemp("tiny_model"), audio_dir, _audible(mel))


@pytest.fixture(scope="module")
def keras_model(model_dir):
    return load_generator(model_dir)


@pytest.fixture(scope="module")
def real_mel(keras_model, clip_path):
    """A real log-mel, 150 frames, [1, frames, n_mels]."""
    config = keras_model[1].audio
    audio = load_audio(clip_path, config.sample_rate)[:150 * config.hop_length]
    return log_mel_numpy(audio, config)[None]


@pytest.fixture(scope="module")
def out_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("tflite_out")


@pytest.fixture(scope="module")
def saved_model(out_dir):
    return str(out_dir / "saved_model")  # exported once, converted in every mode


@pytest.fixture(scope="module")
def float32_model(model_dir, out_dir, saved_model, python):
    """Converted through the command line, as a user would (from the repo root): it names
    the generator it converts and prints nothing on stderr (no TensorFlow C++ lines)."""
    output = str(out_dir / "vocoder_f32.tflite")
    r = subprocess.run(
        [python, "tflite/convert.py", "--model_dir", model_dir, "--output", output,
         "--saved_model", saved_model, "--num_validation", "2", "--validation_frames", "96"],
        cwd=ROOT, env=cli_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stderr == ""
    assert r.stdout.splitlines()[0] == GENERATOR_LINE.format(model_dir), r.stdout
    assert "builtin only" in r.stdout and "SNR" in r.stdout, r.stdout
    return output


@pytest.fixture(scope="module")
def fp16_model(model_dir, out_dir, saved_model, float32_model):
    output = str(out_dir / "vocoder_fp16.tflite")
    conv.convert(model_dir, output, "fp16", saved_model=saved_model, **FAST)
    return output


@pytest.fixture(scope="module")
def int8_model(model_dir, out_dir, saved_model, float32_model):
    output = str(out_dir / "vocoder_int8.tflite")
    conv.convert(model_dir, output, "int8", saved_model=saved_model, **FAST)
    return output


def assert_builtin_only(path):
    ops = read_ops(path)
    names = {o["op"] for o in ops}
    assert not names & set(VARIABLE_OPS), names
    assert not [n for n in names if n.startswith("CUSTOM")], names  # Flex ops are custom
    assert op_problems(ops) == []
    # Upsamplers run as CONV_2D + RESHAPE (polyphase), faster under XNNPACK.
    assert "CONV_2D" in names and "TRANSPOSE_CONV" not in names
    return names


def test_float32_equals_keras(float32_model, keras_model, real_mel):
    # Reflection pads are exported as slices + concat (XNNPACK does not take MIRROR_PAD),
    # and dilated convs as CONV_2D with a dilation factor even with a dynamic length
    # (tf.nn.convolution's SpaceToBatch wrapping would stay in the graph).
    ops = assert_builtin_only(float32_model)
    assert "MIRROR_PAD" not in ops and "GATHER" not in ops
    assert "SPACE_TO_BATCH_ND" not in ops and "BATCH_TO_SPACE_ND" not in ops
    generator, config = keras_model
    vocoder = Vocoder(float32_model, num_threads=2)
    assert vocoder.signature == "serving_default"
    assert (vocoder.input_name, vocoder.output_name) == ("mel", "audio")
    assert vocoder.fixed_frames is None
    out = vocoder(real_mel)
    ref = generator(tf.constant(real_mel)).numpy()
    assert out.shape == ref.shape == (1, real_mel.shape[1] * config.audio.hop_length)
    np.testing.assert_allclose(out, ref, atol=FP32_ATOL, rtol=0)
    assert np.std(ref) > 0.1 and abs(np.mean(ref)) < 0.1  # see _audible

    sidecar = read_sidecar(float32_model)
    assert sidecar["quantization"] == "float32"
    assert sidecar["hop_length"] == config.audio.hop_length
    assert sidecar["audio"]["sample_rate"] == config.audio.sample_rate
    assert sidecar["input"]["name"] == "mel" and sidecar["output"]["name"] == "audio"
    assert sidecar["input"]["shape_signature"] == [1, -1, config.audio.n_mels]
    assert sidecar["frames"] == {"mode": "dynamic", "fixed": None, "min": 4}
    assert sidecar["reflection_pad"] == "slices"
    # The fields of tf_melgan.export's sidecar too (architecture, receptive field, recipe).
    assert sidecar["signature"]["name"] == "serving_default"
    assert sidecar["generator"]["hop_length"] == config.audio.hop_length
    assert sidecar["min_frames"] == 4 and "receptive_field_frames" in sidecar
    assert sidecar["validation"]["snr_db"] > 80
    assert sidecar["size_bytes"] == os.path.getsize(float32_model)
    golden = np.load(float32_model.replace(".tflite", ".golden.npz"))
    np.testing.assert_allclose(golden["audio"], generator(tf.constant(golden["mel"])).numpy(),
                               atol=1e-6)


def test_synthesize_reads_the_converted_model(float32_model, keras_model, real_mel):
    """tf_melgan.synthesize loads the .tflite with its sidecar (audio config, hop)."""
    synthesize = pytest.importorskip("tf_melgan.synthesize")
    vocoder = synthesize.load_vocoder(float32_model)
    assert vocoder.sample_rate == keras_model[1].audio.sample_rate
    got = synthesize.synthesize(vocoder, real_mel[0])
    want = keras_model[0](tf.constant(real_mel)).numpy()[0]
    np.testing.assert_allclose(got, want, atol=FP32_ATOL, rtol=0)


def test_fp16_close_to_keras(fp16_model, float32_model, keras_model, real_mel):
    assert_builtin_only(fp16_model)
    out = Vocoder(fp16_model)(real_mel)
    ref = keras_model[0](tf.constant(real_mel)).numpy()
    assert snr_db(ref, out) > FP16_MIN_SNR_DB
    assert np.max(np.abs(out - ref)) < 1e-2
    assert os.path.getsize(fp16_model) < 0.6 * os.path.getsize(float32_model)
    assert read_sidecar(fp16_model)["smoke_tolerance"]["min_snr_db"] == checks.FP16_SNR_FLOOR


def test_int8_is_full_integer_and_tracks_keras(int8_model, float32_model, keras_model,
                                               real_mel):
    assert_builtin_only(int8_model)
    sidecar = read_sidecar(int8_model)
    # int8 weights and activations in every conv; float32 I/O for the app.
    assert sidecar["kernels"] and all(k.endswith("int8 x int8") for k in sidecar["kernels"])
    assert sidecar["input"]["dtype"] == sidecar["output"]["dtype"] == "float32"
    assert sidecar["calibration"]["segments"] == FAST["num_calibration"]
    assert "training split" in sidecar["calibration"]["source"]
    out = Vocoder(int8_model)(real_mel)
    ref = keras_model[0](tf.constant(real_mel)).numpy()
    assert np.all(np.isfinite(out)) and np.max(np.abs(out)) <= 1.0
    assert snr_db(ref, out) > INT8_MIN_SNR_DB
    assert sidecar["validation"]["snr_db"] > INT8_MIN_SNR_DB
    assert os.path.getsize(int8_model) < 0.4 * os.path.getsize(float32_model)


def _on_int8_output_grid(audio):
    """Share of samples on the int8 output grid (tanh output: scale 1/128, zero point 0)."""
    return float(np.mean(np.abs(audio * 128 - np.round(audio * 128)) < 1e-4))


def test_int8_with_float_output_layers(model_dir, out_dir, saved_model, int8_model,
                                       keras_model, real_mel):
    output = str(out_dir / "vocoder_int8_float_out.tflite")
    sidecar = conv.convert(model_dir, output, "int8", saved_model=saved_model,
                           float_layers=["output"], **FAST)
    assert_builtin_only(output)
    assert sidecar["float_layers"] == ["output"]
    # conv_post (the one conv of the 'output' layers) in float32, every other conv int8.
    kernels = sidecar["kernels"]
    assert kernels["CONV_2D float32 x float32"] == 1
    assert kernels["CONV_2D int8 x int8"] == read_sidecar(int8_model)["kernels"][
        "CONV_2D int8 x int8"] - 1
    ref = keras_model[0](tf.constant(real_mel)).numpy()
    out = Vocoder(output)(real_mel)
    plain = Vocoder(int8_model)(real_mel)
    # The plain int8 model's waveform is 8-bit audio; this one's is not.
    assert _on_int8_output_grid(plain) == 1.0
    assert _on_int8_output_grid(out) < 0.2
    assert snr_db(ref, out) > INT8_MIN_SNR_DB


def test_float_layers_must_match_and_need_int8(model_dir, tmp_path, saved_model, int8_model):
    output = str(tmp_path / "v.tflite")
    with pytest.raises(conv.ConversionError, match="'res_9_' matches no tensor"):
        conv.convert(model_dir, output, "int8", saved_model=saved_model,
                     float_layers=["res_9_"], **FAST)
    with pytest.raises(ValueError, match="float_layers needs mode 'int8'"):
        conv.convert(model_dir, output, "fp16", float_layers=["output"], **FAST)
    assert not os.path.exists(output)
    names = ["m/up_1_1/conv", "m/res_1_0_1/add", "m/conv_post_1/BiasAdd", "m/Tanh",
             "StatefulPartitionedCall:01"]
    assert quantize.float_tensor_names(names, ["output"]) == names[2:]
    assert quantize.float_tensor_names(names, ["up_1", "output"]) == [names[0]] + names[2:]


def test_activation_ranges_spec():
    assert ranges.parse("minmax") is None
    assert ranges.parse("p99.99") == 99.99 and ranges.parse("p100") == 100.0
    for bad in ("p40", "p100.5", "99.99", "p", "pX", ""):
        with pytest.raises(ValueError, match="activation ranges"):
            ranges.parse(bad)


@pytest.fixture(scope="module")
def calibration(keras_model, saved_model, int8_model):
    """Calibration mels of the tiny model's training split, and the calibrated model."""
    config = keras_model[1]
    train, _ = clips.data_splits(config, config.data.path)
    mels = clips.calibration_mels(train, config.audio, 4, 48, False, (0.3, 1.0))
    representative = lambda: ({INPUT_NAME: m} for m in mels)  # noqa: E731
    return mels, representative, quantize.calibrate(saved_model, representative)


def test_calibrate_then_quantize_is_what_convert_makes(saved_model, calibration, tmp_path,
                                                       real_mel):
    # The path --ranges and --float_layers take (calibrate, edit, quantize) quantizes as
    # TFLiteConverter.convert() does when nothing is edited.
    mels, representative, calibrated = calibration
    whole = quantize.make_converter(saved_model, "int8", representative).convert()
    split = quantize.quantize_calibrated(calibrated)
    assert op_counts(read_ops(whole)) == op_counts(read_ops(split))
    outs = []
    for name, model in (("whole", whole), ("split", split)):
        path = tmp_path / f"{name}.tflite"
        path.write_bytes(model)
        outs.append(Vocoder(str(path))(real_mel))
    np.testing.assert_array_equal(outs[0], outs[1])


def test_percentile_ranges_are_the_tensors_percentiles(calibration):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    mels, _, calibrated = calibration
    recorded = ranges.recorded_ranges(calibrated)
    found = ranges.percentile_ranges(calibrated, mels, 99.0)
    assert set(found) == set(recorded) and len(found) > 50
    # Reference: every value of every recorded tensor (the tiny model's tensors are below
    # ranges.MAX_VALUES, so nothing is subsampled), np.percentile.
    interpreter = Interpreter(
        model_content=calibrated, experimental_preserve_all_tensors=True,
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    index = interpreter.get_input_details()[0]["index"]
    values = {i: [] for i in found}
    for mel in mels:
        interpreter.resize_tensor_input(index, mel.shape)
        interpreter.allocate_tensors()
        interpreter.set_tensor(index, mel)
        interpreter.invoke()
        for i in values:
            values[i].append(interpreter.get_tensor(i).ravel().copy())
    narrower = 0
    for i, (lo, hi) in found.items():
        v = np.concatenate(values[i])
        assert v.size <= ranges.MAX_VALUES * len(mels)
        rec_lo, rec_hi = recorded[i]
        tol = 2 * (rec_hi - rec_lo) / ranges.BINS
        assert lo <= 0.0 <= hi and rec_lo - tol <= lo and hi <= rec_hi + tol
        # Between the order statistics around the 1% / 99% ranks (+- one rank), to within
        # the histogram's resolution.
        v.sort()
        k = 0.01 * v.size
        lo_refs = v[[max(int(k) - 1, 0), min(int(np.ceil(k)) + 1, v.size - 1)]]
        hi_refs = v[[max(v.size - int(np.ceil(k)) - 2, 0), min(v.size - int(k), v.size - 1)]]
        assert min(lo_refs[0], 0.0) - tol <= lo <= min(lo_refs[1], 0.0) + tol, (i, lo, lo_refs)
        assert max(hi_refs[0], 0.0) - tol <= hi <= max(hi_refs[1], 0.0) + tol, (i, hi, hi_refs)
        narrower += (hi - lo) < 0.9 * (rec_hi - rec_lo)
    assert narrower > len(found) // 4  # the percentiles do change many ranges (43% here)


def test_default_int8_ranges_are_percentiles(model_dir, tmp_path, saved_model, int8_model):
    minmax = str(tmp_path / "minmax.tflite")
    assert conv.convert(model_dir, minmax, "int8", saved_model=saved_model, ranges="minmax",
                        **FAST)["activation_ranges"] == "minmax"
    assert read_sidecar(int8_model)["activation_ranges"] == conv.DEFAULT_RANGES == "p99.99"

    def scales(path):  # activation scales of the int8 model, by tensor name
        from ai_edge_litert.interpreter import Interpreter
        return {d["name"]: d["quantization"][0] for d in
                Interpreter(model_path=path).get_tensor_details()
                if d["dtype"] == np.int8 and d["quantization"][0] > 0
                and not d["name"].startswith(("tfl.pseudo_qconst", "arith.constant"))}
    plain, tuned = scales(minmax), scales(int8_model)
    common = [n for n in plain if n in tuned]
    assert len(common) > 50
    assert all(tuned[n] <= plain[n] * (1 + 1e-6) for n in common)
    assert sum(tuned[n] < 0.9 * plain[n] for n in common) > len(common) // 10  # 22 of 177
    with pytest.raises(ValueError, match="ranges needs mode 'int8'"):
        conv.convert(model_dir, str(tmp_path / "x.tflite"), "fp16", ranges="p99.9", **FAST)
    with pytest.raises(ValueError, match="activation ranges 'p5'"):
        conv.convert(model_dir, str(tmp_path / "x.tflite"), "int8", ranges="p5", **FAST)


def test_int8_io_with_percentile_ranges(model_dir, tmp_path, saved_model, int8_model, capfd,
                                       monkeypatch):
    # --int8_io goes through the calibrate / edit / quantize path too. As the CLI runs it
    # (quiet): calibration shows progress; the quantizer's own stderr line
    # ('fully_quantize: 0, inference_type: 6, ...') and LiteRT's are dropped.
    monkeypatch.setattr("tf_melgan.cli._quiet", True)
    output = str(tmp_path / "io.tflite")
    sidecar = conv.convert(model_dir, output, "int8", saved_model=saved_model, int8_io=True,
                           **FAST)
    out, err = capfd.readouterr()
    assert err == ""
    lines = out.splitlines()
    assert lines[0] == GENERATOR_LINE.format(model_dir)
    assert [line.split(" in ")[0] for line in lines if " segments in " in line] == [
        "calibrating: 6 segments", "activation ranges: 6 segments"]
    assert lines[1].startswith("WARNING: no quantization-aware form here")
    assert sidecar["activation_ranges"] == conv.DEFAULT_RANGES
    assert sidecar["input"]["dtype"] == sidecar["output"]["dtype"] == "int8"
    assert all(k.endswith("int8 x int8") for k in sidecar["kernels"])
    assert sidecar["validation"]["snr_db"] > INT8_MIN_SNR_DB


def test_fixed_frames_with_mirror_pad(model_dir, out_dir, keras_model, real_mel):
    output = str(out_dir / "vocoder_fixed.tflite")
    sidecar = conv.convert(model_dir, output, "float32", frames=40, mirror_pad=True, **FAST)
    assert sidecar["input"]["shape_signature"] == [1, 40, keras_model[1].audio.n_mels]
    assert sidecar["frames"] == {"mode": "fixed", "fixed": 40, "min": 40}
    assert sidecar["reflection_pad"] == "MIRROR_PAD" and "MIRROR_PAD" in sidecar["ops"]
    # Static shapes let the converter fold the dilated convs' SPACE_TO_BATCH_ND away.
    assert "SPACE_TO_BATCH_ND" not in sidecar["ops"]
    vocoder = Vocoder(output)
    np.testing.assert_allclose(vocoder(real_mel[:, :40]),
                               keras_model[0](tf.constant(real_mel[:, :40])).numpy(),
                               atol=FP32_ATOL, rtol=0)
    with pytest.raises(ValueError, match="exactly 40 frames"):
        vocoder(real_mel[:, :41])


def _silence(generator):
    post = generator.conv_post  # w = g v / |v|: g = 0 and bias 0 -> tanh(0) = 0
    post.g.assign(np.zeros(post.g.shape, np.float32))
    post.layer.bias.assign(np.zeros(post.layer.bias.shape, np.float32))


def _nan(generator):
    bias = generator.conv_post.layer.bias
    bias.assign(np.full(bias.shape, np.nan, np.float32))


@pytest.mark.parametrize("edit,message", [(_silence, "silent"), (_nan, "NaN")])
def test_refuses_silent_or_nan_model(tmp_path, audio_dir, capsys, edit, message):
    broken = make_model_dir(tmp_path / "broken", audio_dir, edit)
    output = tmp_path / "out" / "broken.tflite"
    rc = convert_cli.main(["convert", "--model_dir", broken, "--output", str(output), "--num_validation", "1",
                    "--validation_frames", "64"])
    err = capsys.readouterr().err.strip()
    assert rc == 1
    assert "refused, nothing written" in err and message in err, err
    assert not os.path.exists(output)
    assert not os.path.exists(str(output).replace(".tflite", ".json"))


def test_op_check_catches_weightless_conversion(model_dir, keras_model, tmp_path):
    """TF 2.21's tf.saved_model.save with a lambda signature keeps the weights as resource
    variables: the .tflite has VAR_HANDLE / READ_VARIABLE ops and no weights. convert.py
    refuses such a SavedModel (--saved_model) instead of writing a NaN model."""
    generator = keras_model[0]
    n_mels = keras_model[1].audio.n_mels
    fn = tf.function(lambda mel: {"audio": generator(mel)},
                     input_signature=[tf.TensorSpec([1, None, n_mels], tf.float32, name="mel")])
    trap = str(tmp_path / "trap_saved_model")
    tf.saved_model.save(generator, trap, signatures={"serving_default": fn})
    converted = tf.lite.TFLiteConverter.from_saved_model(trap).convert()
    ops = read_ops(converted)
    if not {o["op"] for o in ops} & set(VARIABLE_OPS):
        pytest.skip("this TensorFlow freezes the weights: the trap no longer reproduces")
    assert any("resource-variable ops" in p for p in op_problems(ops))
    output = tmp_path / "trap.tflite"
    with pytest.raises(conv.ConversionError, match="VAR_HANDLE"):
        conv.convert(model_dir, str(output), "float32", saved_model=trap, **FAST)
    assert not output.exists()


def test_dynamic_range_only_on_request_and_warned(model_dir, tmp_path, saved_model,
                                                  float32_model, capsys):
    output = str(tmp_path / "dr.tflite")
    sidecar = conv.convert(model_dir, output, "dynamic_range", saved_model=saved_model, **FAST)
    assert "WARNING: --dynamic_range" in capsys.readouterr().out
    assert any("float32 x int8" in k for k in sidecar["kernels"])  # hybrid kernels


# ---------------------------------------------------------------- smoke test, no TensorFlow

LITERT_ONLY = ["ai-edge-litert", "numpy", "soundfile", "absl-py"]


@pytest.fixture(scope="session")
def litert_only_python(request, tmp_path_factory):
    """A venv with only ai-edge-litert, NumPy, soundfile and absl-py (pip, from the local mirror),
    built once and cached in pytest's cache dir (.pytest_cache) across sessions."""
    cache = getattr(request.config, "cache", None)
    base = cache.mkdir("tflite_smoke_venv") if cache else tmp_path_factory.mktemp("venv")
    venv, stamp = base / "venv", base / "stamp.json"
    py = venv / "bin" / "python"
    want = {"python": sys.version, "packages": LITERT_ONLY}

    def usable():
        if not (py.exists() and stamp.exists()) or json.loads(stamp.read_text()) != want:
            return False
        return subprocess.run([str(py), "-c", "import ai_edge_litert, numpy, soundfile"],
                              capture_output=True, timeout=120).returncode == 0

    if not usable():
        shutil.rmtree(venv, ignore_errors=True)
        stamp.unlink(missing_ok=True)
        r = subprocess.run([sys.executable, "-m", "venv", str(venv)], capture_output=True,
                           text=True, timeout=300)
        if r.returncode != 0:
            pytest.skip(f"cannot create a venv: {r.stderr.strip()[-300:]}")
        r = subprocess.run([str(py), "-m", "pip", "install", "--quiet", *LITERT_ONLY],
                           capture_output=True, text=True, timeout=600)
        if r.returncode != 0:
            lines = (r.stderr or r.stdout).strip().splitlines() or ["?"]
            pytest.skip(f"pip cannot install {' '.join(LITERT_ONLY)} (offline?): {lines[-1]}")
        stamp.write_text(json.dumps(want))
    r = subprocess.run([str(py), "-c", "import tensorflow"], capture_output=True, timeout=120)
    assert r.returncode != 0, "the LiteRT-only venv can import tensorflow"
    return str(py)


def run_smoke(python, model, **env):
    return subprocess.run([python, SMOKE, model], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **env})


@pytest.mark.parametrize("model", ["float32_model", "fp16_model", "int8_model"])
def test_smoke_test_runs_without_tensorflow(litert_only_python, request, model):
    path = request.getfixturevalue(model)
    r = run_smoke(litert_only_python, path, TF_MELGAN_SMOKE_ASSERT_NO_TF="1")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("OK ") and "frames 4/32/862" in r.stdout, r.stdout


def test_smoke_test_imports_no_tensorflow_even_when_installed(float32_model, python):
    """In this venv TensorFlow is importable: nothing on smoke_test's path may import it."""
    r = run_smoke(python, float32_model, TF_MELGAN_SMOKE_ASSERT_NO_TF="1")
    assert r.returncode == 0, r.stderr
    r = subprocess.run([python, "-X", "importtime", SMOKE, float32_model],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    imported = [line.rsplit("|", 1)[-1].strip() for line in r.stderr.splitlines()
                if line.startswith("import time:")]
    assert "numpy" in imported and "ai_edge_litert.interpreter" in imported
    assert not [m for m in imported if m.split(".")[0] == "tensorflow"]


def test_smoke_test_fails_on_a_wrong_golden(float32_model, tmp_path, python):
    model = shutil.copy(float32_model, tmp_path / "m.tflite")
    shutil.copy(float32_model.replace(".tflite", ".json"), tmp_path / "m.json")
    golden = dict(np.load(float32_model.replace(".tflite", ".golden.npz")))
    golden["audio"] = golden["audio"] * 1.01
    np.savez(tmp_path / "m.golden.npz", **golden)
    r = run_smoke(python, str(model))
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    fail = [line for line in lines if line.startswith("FAIL")]
    assert len(fail) == 1 and "max |diff|" in fail[0], r.stderr


# ------------------------------------------------------------------ output safety

def test_read_only_output_is_refused_before_converting(read_only_dir, monkeypatch, capsys):
    import tf_melgan.checkpoint

    def no_loading(*args, **kwargs):
        raise AssertionError("the model was loaded before the output was checked")

    monkeypatch.setattr(tf_melgan.checkpoint, "load_generator", no_loading)
    out = read_only_dir / "vocoder.tflite"
    assert convert_cli.main(["convert", "--model_dir", "ljspeech", "--output", str(out)]) == 1
    err = capsys.readouterr().err
    reasons = {os.strerror(errno.EROFS), os.strerror(errno.EACCES)}
    assert err in {f"convert.py: refused, nothing written: {out}: {r}\n" for r in reasons}, err
    assert os.listdir(read_only_dir) == []


def test_ctrl_c_turned_into_a_converter_error_is_still_an_interrupt(model_dir, tmp_path,
                                                                    monkeypatch, capsys):
    """The int8 calibration runs Python from C++: a Ctrl-C there comes back as the
    converter's own error (exit 1 on a loaded CI machine), not as KeyboardInterrupt."""
    import signal

    def interrupted_inside_the_converter(*args, **kwargs):
        try:
            os.kill(os.getpid(), signal.SIGINT)
        except KeyboardInterrupt as e:
            raise conv.ConversionError("TFLiteConverter failed: calibration") from e

    monkeypatch.setattr(conv, "convert", interrupted_inside_the_converter)
    out = tmp_path / "v.tflite"
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # a shell's (not nohup's)
    try:
        status = convert_cli.main(["convert", "--model_dir", model_dir, "--output", str(out)])
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored
    finally:
        signal.signal(signal.SIGINT, previous)
    assert status == 130
    assert capsys.readouterr().err == "convert.py: refused, nothing written: interrupted (Ctrl-C)\n"


def test_outputs_are_written_all_or_nothing(tmp_path, tmpfs, monkeypatch):
    """A full disk while writing the three files (a 256 kB tmpfs and 307 kB to write, or
    the same ENOSPC injected into the golden pair's write) leaves the previous three."""
    model = tmp_path / "model.tflite"
    model.write_bytes(b"\x01" * 200_000)
    golden = dict(mel=np.zeros((1, 128, 80), np.float32), audio=np.zeros((1, 16_384), np.float32))
    disk = tmpfs("256k") or tmp_path / "disk"
    out = disk / "vocoder.tflite"
    conv.write_outputs(str(out), str(model), '{"old": true}', tiny=np.zeros(2, np.float32))
    previous = {name: (disk / name).read_bytes() for name in os.listdir(disk)}
    assert sorted(previous) == ["vocoder.golden.npz", "vocoder.json", "vocoder.tflite"]
    if disk == tmp_path / "disk":  # no tmpfs: inject
        def savez_then_fail(path, **arrays):
            with open(path, "wb") as f:
                f.write(b"PK")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        monkeypatch.setattr(np, "savez", savez_then_fail)
    with pytest.raises(conv.ConversionError) as info:
        conv.write_outputs(str(out), str(model), '{"new": true}', **golden)
    message = str(info.value)
    assert re.fullmatch(rf"{re.escape(str(disk))}/vocoder\.(tflite|golden\.npz): no space left "
                        r"on device \(needs about 0\.31 MB, \d+\.\d\d [MG]B free\)", message), \
        message
    assert {name: (disk / name).read_bytes() for name in os.listdir(disk)} == previous


def test_smoke_test_of_a_non_model_is_one_line(float32_model, python):
    sidecar = float32_model.replace(".tflite", ".json")
    r = run_smoke(python, sidecar)
    assert r.returncode == 1
    assert r.stderr == f"FAIL {sidecar}: {sidecar} is not a .tflite model (no TFL3 " \
                       f"identifier)\n"


@pytest.mark.parametrize("flag", ["--num_threads", "--threads"])  # --threads: the old name
def test_smoke_test_thread_flag(float32_model, python, flag):
    r = subprocess.run([python, SMOKE, float32_model, flag, "1"], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.startswith("OK ") and r.stderr == "", r.stderr


def test_convert_refuses_to_overwrite_unless_asked(model_dir, float32_model, capsys):
    before = {p: os.path.getmtime(p) for p in (float32_model,
                                               float32_model.replace(".tflite", ".json"))}
    assert convert_cli.main(["convert", "--model_dir", model_dir, "--output", float32_model]) == 1
    assert capsys.readouterr().err == (f"convert.py: refused, nothing written: {float32_model} "
                                       f"exists (pass overwrite=True / --overwrite)\n")
    assert {p: os.path.getmtime(p) for p in before} == before


def test_converted_model_says_which_generator(model_dir, float32_model, tmp_path, capsys):
    source = read_sidecar(float32_model)["source"]
    assert source == {"model_dir": os.path.abspath(model_dir), "which": "best",
                      "path": os.path.join(model_dir, "best_generator.weights.h5"), **BEST}
    from tf_melgan.synthesize import main
    mel = tmp_path / "mel.npy"
    np.save(mel, np.full((20, 80), -4.0, np.float32))
    assert main(["synthesize", "--model", float32_model, "--input", str(mel),
                     "--output", str(tmp_path / "out.wav")]) == 0
    assert capsys.readouterr().out.splitlines()[0] == (
        f"generator: best generator (step 7, validation log-mel L1 1.2345) of "
        f"{os.path.abspath(model_dir)}, exported to {float32_model}")
