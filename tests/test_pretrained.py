"""The shipped vocoders (tf_melgan/pretrained/ljspeech, ljspeech_large, universal_16k):
found by name everywhere a model dir is taken, load, and sound voiced on held-out clips they
never heard (LJ Speech; for universal_16k, LibriSpeech speakers it never heard)."""

import json
import os

import numpy as np
import pytest

from tf_melgan import pretrained

SHIPPED = pretrained.path("ljspeech")
RATES = {"universal_16k": 16000}  # the others: 22050
LJ = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data"))


def read_json(name, filename):
    """A JSON file of a shipped vocoder's model dir (card.json, best.json)."""
    with open(os.path.join(pretrained.path(name), filename)) as f:
        return json.load(f)


def test_names_resolve_to_the_package_and_paths_win(tmp_path, monkeypatch):
    assert pretrained.resolve("ljspeech") == SHIPPED
    assert os.path.isfile(os.path.join(SHIPPED, "best_generator.weights.h5"))
    # an existing path of that name is the user's, not ours; unknown names pass through
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ljspeech").mkdir()
    assert pretrained.resolve("ljspeech") == "ljspeech"
    assert pretrained.resolve("no-such-model") == "no-such-model"
    with pytest.raises(KeyError, match="shipped: ljspeech"):
        pretrained.path("vctk")


def test_what_an_export_records_of_a_shipped_model_names_no_machine(tmp_path):
    assert pretrained.portable(os.path.join(SHIPPED, "int8")) == os.path.join(
        "tf_melgan", "pretrained", "ljspeech", "int8")
    assert pretrained.portable(str(tmp_path / "run")) == str(tmp_path / "run")
    # the shipped .tflite's manifest: where it came from, package-relative
    manifest = json.load(open(os.path.join(SHIPPED, "int8", "ljspeech_int8.json")))
    recorded = [manifest["source"]["model_dir"], manifest["source"]["path"]]
    assert all(p.startswith(os.path.join("tf_melgan", "pretrained", "")) for p in recorded)


@pytest.mark.parametrize("name", pretrained.NAMES)
def test_loads_by_name_in_python_and_for_init_from(name):
    import tf_melgan
    from tf_melgan.checkpoint import load_generator
    from tf_melgan.resume import init_checkpoint
    generator, config = load_generator(pretrained.path(name))
    vocoder = tf_melgan.load_vocoder(name)
    assert vocoder.sample_rate == config.audio.sample_rate == RATES.get(name, 22050)
    mel = np.full((1, 20, generator.n_mels), -4.0, np.float32)
    np.testing.assert_allclose(vocoder(mel), np.asarray(generator(mel)), atol=1e-5)
    # train --init_from NAME: the generator's weights (no checkpoint is shipped)
    assert init_checkpoint(config, name).path.endswith("best_generator.weights.h5")
    card = read_json(name, "card.json")
    assert card["step"] == read_json(name, "best.json")["step"]
    assert card["parameters"] == generator.folded().count_params()


@pytest.mark.skipif(not os.path.isdir(os.path.join(LJ, "ljspeech-extra")),
                    reason="needs ../shared/data (the held-out LJ Speech clips)")
@pytest.mark.parametrize("name", pretrained.NAMES)
def test_on_held_out_clips_as_its_card_says(monkeypatch, name):
    """4 held-out clips (3 s each) the model never heard: the frame-rate comb, pyin voicing
    agreement and log-mel L1 within a margin of the card's figures on all its held-out
    clips (the card is what the model cards, docs/MODELS.md and the README, quote)."""
    from benchmarks.curve import evaluate, held_out_clips
    from tf_melgan.checkpoint import load_generator
    monkeypatch.chdir(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    generator, config = load_generator(pretrained.path(name))
    clips = held_out_clips(config, pretrained.path(name), 4, 3.0)
    scores = evaluate(lambda m: generator(m), clips, config.audio, pesq_stoi=False)
    card = read_json(name, "card.json")["held_out"]["vocoder"]
    # a transposed-conv MelGAN here: 17-23 dB; the shipped MelGANs ~3, universal_16k ~11
    assert scores["frame_comb_db"] < max(6.0, card["frame_comb_db"] + 3.0), (scores, card)
    assert scores["voicing"] > card["voicing"] - 0.15, (scores, card)
    assert scores["log_mel_l1"] < card["log_mel_l1"] + 0.1, (scores, card)


def test_cli_tools_take_the_name(tmp_path, capsys):
    """synthesize --model ljspeech and export --model_dir ljspeech, as the README shows."""
    import soundfile as sf
    from tf_melgan import export, synthesize
    clip = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        "demo_data", "wavs", "demo_000.flac")
    out = str(tmp_path / "out.wav")
    assert synthesize.main(["synthesize", "--model", "ljspeech", "--input", clip,
                                "--output", out]) == 0
    audio, rate = sf.read(out)
    assert rate == 22050 and abs(len(audio) / rate - sf.info(clip).duration) < 256 / rate
    assert export.main(["export", "--model_dir", "ljspeech", "--output",
                            str(tmp_path / "sm")]) == 0
    printed = capsys.readouterr().out
    assert f"of {SHIPPED}" in printed and "max |SavedModel - Keras| = 0" in printed


INT8 = os.path.join(SHIPPED, "int8")


def test_every_export_of_the_shipped_vocoders_streams_exactly(tmp_path):
    """Chunked synthesis (`chunk_frames` 32, the default context: the receptive field its
    manifest carries) equals whole-utterance synthesis, for each shipped vocoder as a
    SavedModel, for `ljspeech` as float32 and fp16 .tflite, and the shipped int8 ones."""
    from tf_melgan import load_vocoder
    from tf_melgan.audio import load_audio
    from tf_melgan.deploy.convert import convert
    from tf_melgan.deploy.saved_model import export_saved_model
    from tf_melgan.deploy.vocoder import mel_of_audio
    from tf_melgan.synthesize import synthesize
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    demo = os.path.join(root, "demo_data")
    exports = {"ljspeech int8": os.path.join(INT8, "ljspeech_int8.tflite"),
               "universal_16k int8": os.path.join(pretrained.path("universal_16k"), "int8",
                                                  "universal_16k_int8.tflite")}
    for name in pretrained.NAMES:
        exports[f"{name} SavedModel"] = export_saved_model(pretrained.path(name),
                                                           str(tmp_path / name))
    for mode in ("float32", "fp16"):
        path = str(tmp_path / f"ljspeech_{mode}.tflite")
        convert(SHIPPED, path, mode, data=demo, num_validation=1, validation_frames=64)
        exports[f"ljspeech {mode}"] = path
    clip = load_audio(os.path.join(demo, "wavs", "demo_000.flac"), 22050)[:150 * 256]
    for label, path in exports.items():
        vocoder = load_vocoder(path)
        mel = mel_of_audio(clip, vocoder)
        whole = synthesize(vocoder, mel)
        chunked = synthesize(vocoder, mel, chunk_frames=32)
        assert whole.shape == chunked.shape == (mel.shape[0] * 256,), label
        assert np.max(np.abs(chunked - whole)) < 1e-5, label


def test_int8_form_is_what_quantize_converts():
    """`--quantize` of the shipped name converts its quantization-aware generator (int8/),
    not the float weights; a plain model dir converts itself."""
    from tf_melgan.deploy.convert.qat_ranges import int8_model_dir
    from tf_melgan.qat import RANGES_FILE
    assert int8_model_dir(SHIPPED) == INT8
    assert os.path.isfile(os.path.join(INT8, RANGES_FILE))
    assert int8_model_dir(INT8) == INT8  # no int8/ below it: itself


@pytest.mark.skipif(not os.path.isdir(os.path.join(LJ, "ljspeech-extra")),
                    reason="needs ../shared/data (the held-out LJ Speech clips)")
def test_shipped_int8_tflite_is_the_int8_its_training_simulated(monkeypatch):
    """The ready int8 .tflite: builtin ops only, QAT ranges, and on a held-out clip its
    output agrees with the fake-quant Keras generator it was converted from (LiteRT's
    fixed-point rounding differs from fake-quant's: >= checks.QAT_MIN_SNR_DB) and is voiced."""
    from benchmarks.curve import evaluate, held_out_clips
    from tf_melgan import load_vocoder, qat
    from tf_melgan.deploy.convert.checks import QAT_MIN_SNR_DB
    from tf_melgan.deploy.litert import op_problems, read_ops, snr_db
    from tf_melgan.deploy.vocoder import mel_of_audio
    monkeypatch.chdir(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    path = os.path.join(INT8, "ljspeech_int8.tflite")
    manifest = json.load(open(os.path.join(INT8, "ljspeech_int8.json")))
    assert manifest["activation_ranges"] == "qat" and not op_problems(read_ops(path))
    vocoder = load_vocoder(path)
    generator, config = qat.load_quantized(INT8)
    clip = held_out_clips(config, INT8, 1, 3.0)
    mel = mel_of_audio(clip[0], vocoder)[None]
    assert snr_db(np.asarray(generator(mel)), vocoder(mel)) >= QAT_MIN_SNR_DB
    scores = evaluate(lambda m: vocoder(np.asarray(m)), clip, config.audio, pesq_stoi=False)
    card = read_json("ljspeech", "card.json")["held_out"]["vocoder"]
    assert scores["voicing"] > card["voicing"] - 0.15, (scores, card)
