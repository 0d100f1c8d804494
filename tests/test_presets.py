"""Mel presets (melgan, hifigan, tacotron2) against librosa, normalisation statistics and
`tf_melgan.preprocess`, the shipped configs at other rates and hops, one train step each."""

import glob
import os

import keras
import librosa
import numpy as np
import pytest
import soundfile as sf
import tensorflow as tf
import yaml

from tf_melgan.audio import LogMel, load_audio, log_mel_numpy, num_frames, silence_mel
from tf_melgan.config import (MEL_PRESETS, AudioConfig, ConfigError, config_from_dict,
                              load_config)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = sorted(glob.glob(os.path.join(ROOT, "configs", "*.yaml")))
PRESETS = ["melgan", "hifigan", "tacotron2"]


def librosa_reference(audio, c: AudioConfig, window=None):
    """Each preset's recipe spelled out with librosa's STFT and filters.

    melgan / hifigan: reflect-pad (n_fft - hop) / 2, librosa.stft(center=False); tacotron2:
    librosa.stft(center=True, pad_mode='reflect') as ParallelWaveGAN's logmelfilterbank.
    The window is the source project's: torch.hann_window's float32 values for the two
    PyTorch projects, librosa's float64 'hann' for tacotron2 (`window` overrides).
    """
    x = audio.astype(np.float64)
    if window is None:
        window = "hann"
        if c.preset.float32_window:
            window = np.hanning(c.win_length + 1)[:-1].astype(np.float32).astype(np.float64)
    kwargs = dict(n_fft=c.n_fft, hop_length=c.hop_length, win_length=c.win_length,
                  window=window)
    if c.mel_preset == "tacotron2":
        spec = librosa.stft(x, center=True, pad_mode="reflect", **kwargs)
    else:
        pad = (c.n_fft - c.hop_length) // 2
        spec = librosa.stft(np.pad(x, (pad, pad), mode="reflect"), center=False, **kwargs)
    if c.mel_preset == "hifigan":
        magnitude = np.sqrt(spec.real ** 2 + spec.imag ** 2 + 1e-9)
    else:
        magnitude = np.abs(spec)
    fb = librosa.filters.mel(sr=c.sample_rate, n_fft=c.n_fft, n_mels=c.n_mels, fmin=c.fmin,
                             fmax=c.fmax)
    mel = np.maximum(fb @ magnitude, c.log_clamp)
    return (np.log(mel) if c.mel_preset == "hifigan" else np.log10(mel)).T


@pytest.fixture(scope="module")
def clip(clip_path):
    return load_audio(clip_path, 22050)


def max_diff(a, b):
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


# ---------------------------------------------------------------- the recipes


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_matches_librosa(clip, preset):
    c = AudioConfig(mel_preset=preset)
    audio = clip[: len(clip) // 256 * 256]
    ref = librosa_reference(audio, c)
    frames = len(audio) // 256
    full = frames + (preset == "tacotron2")  # center=True has one frame more
    assert ref.shape == (full, 80)
    ours_np = log_mel_numpy(audio, c, full=True)
    ours_tf = LogMel(c, full=True)(audio[None]).numpy()[0]
    d_np, d_tf = max_diff(ours_np, ref), max_diff(ours_tf, ref)
    print(f"{preset}: max abs diff vs librosa: numpy {d_np:.2g}, tf {d_tf:.2g}")
    assert d_np <= 1e-5 and d_tf <= 1e-5 and max_diff(ours_np, ours_tf) <= 1e-5
    # By default the frames match the audio the generator makes: samples // hop.
    np.testing.assert_array_equal(log_mel_numpy(audio, c), ours_np[:frames])
    np.testing.assert_array_equal(LogMel(c)(audio[None]).numpy()[0], ours_tf[:frames])
    if c.preset.float32_window:  # against librosa's float64 window: the window's rounding
        d = max_diff(ours_np, librosa_reference(audio, c, window="hann"))
        print(f"{preset}: vs librosa's float64 'hann' window {d:.2g}")
        assert d <= 3e-4


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("sample_rate, n_fft, hop", [(16000, 800, 200), (24000, 1200, 300)])
def test_presets_at_other_rates_and_hops(clip_path, preset, sample_rate, n_fft, hop):
    c = AudioConfig(sample_rate=sample_rate, n_fft=n_fft, hop_length=hop, win_length=n_fft,
                    mel_preset=preset)
    audio = load_audio(clip_path, sample_rate)[: 100 * hop]
    ref = librosa_reference(audio, c)
    np.testing.assert_allclose(log_mel_numpy(audio, c, full=True), ref, atol=1e-5)
    np.testing.assert_allclose(LogMel(c, full=True)(audio[None]).numpy()[0], ref, atol=1e-5)
    assert log_mel_numpy(audio, c).shape == (100, 80)


def test_hifigan_matches_a_transcription_of_its_mel_spectrogram(clip):
    """jik876/hifi-gan meldataset.py mel_spectrogram, line by line in torch, in float64 with
    a float32 Hann window: pad, stft(center=False), sqrt(re^2 + im^2 + 1e-9),
    mel_basis @ spec, log(clamp(x, min=1e-5))."""
    torch = pytest.importorskip("torch")

    def mel_spectrogram(y, window):
        mel_basis = torch.from_numpy(librosa.filters.mel(sr=22050, n_fft=1024, n_mels=80,
                                                         fmin=0, fmax=8000)).double()
        pad = int((1024 - 256) / 2)
        y = torch.nn.functional.pad(y.unsqueeze(1), (pad, pad), mode="reflect").squeeze(1)
        spec = torch.stft(y, 1024, hop_length=256, win_length=1024, window=window,
                          center=False, normalized=False, onesided=True, return_complex=True)
        spec = torch.sqrt(torch.view_as_real(spec).pow(2).sum(-1) + 1e-9)
        spec = torch.log(torch.clamp(torch.matmul(mel_basis, spec), min=1e-5))
        return spec[0].numpy().T

    audio = clip[: 200 * 256]
    ours = log_mel_numpy(audio, AudioConfig(mel_preset="hifigan"))
    y = torch.from_numpy(audio.astype(np.float64))[None]
    # The window's float32 values correctly rounded (ours): float32 output rounding.
    exact = mel_spectrogram(y, torch.hann_window(1024, dtype=torch.float64).float().double())
    assert exact.shape == (200, 80)
    assert max_diff(ours, exact) <= 1e-5
    # torch.hann_window(1024) computed in float32 is up to ~2e-7 off; that shows only in
    # bands far below the frame's loudest, as for melgan (test_pytorch_parity).
    d = np.abs(ours - mel_spectrogram(y, torch.hann_window(1024).double()))
    loud = ours - ours.max(axis=1, keepdims=True) > -3 * np.log(10)
    print(f"hifigan vs torch's float32 window: max {d.max():.2g}, within 60 dB {d[loud].max():.2g}")
    assert d.max() <= 1e-3 and d[loud].max() <= 1e-4


def test_frame_counts_and_static_shapes():
    audio = np.random.default_rng(0).uniform(-0.5, 0.5, (2, 2048)).astype("float32")
    for preset in PRESETS:
        c = AudioConfig(mel_preset=preset)
        extra = preset == "tacotron2"
        assert num_frames(2048, c) == 8 and num_frames(2048, c, full=True) == 8 + extra
        assert num_frames(2048 + 100, c) == 8
        assert log_mel_numpy(audio, c).shape == (2, 8, 80)
        assert log_mel_numpy(audio, c, full=True).shape == (2, 8 + extra, 80)
        for full in (False, True):
            layer = LogMel(c, full=full)
            assert layer.compute_output_shape((2, 2048)) == (2, 8 + (full and extra), 80)
            assert layer.compute_output_shape((None, None)) == (None, None, 80)
        # In a tf.data map the frame count stays static (the data pipeline batches on it).
        ds = tf.data.Dataset.from_tensors(audio).map(LogMel(c))
        assert ds.element_spec.shape.as_list() == [2, 8, 80]
        # ... and a dynamic length works in a tf.function.
        fn = tf.function(LogMel(c), input_signature=[tf.TensorSpec([None, None])])
        assert fn(audio).shape == (2, 8, 80)


def test_silence_floor_per_preset():
    # Digital silence sits at the log of the clamp (hifigan: sqrt(1e-9) per bin stays below).
    for preset, floor in (("melgan", -5.0), ("hifigan", np.log(1e-5)), ("tacotron2", -10.0)):
        c = AudioConfig(mel_preset=preset)
        np.testing.assert_allclose(silence_mel(c), np.full(80, floor), rtol=1e-6)
        np.testing.assert_allclose(LogMel(c)(np.zeros((1, 4096), "float32")).numpy(),
                                   np.full((1, 16, 80), floor), rtol=1e-6)


# ---------------------------------------------------------------- config


def test_presets_fill_in_their_defaults():
    for preset, (fmin, fmax, clamp) in (("melgan", (0.0, None, 1e-5)),
                                        ("hifigan", (0.0, 8000.0, 1e-5)),
                                        ("tacotron2", (80.0, 7600.0, 1e-10))):
        a = config_from_dict({"audio": {"mel_preset": preset}}).audio
        assert (a.fmin, a.fmax, a.log_clamp) == (fmin, fmax, clamp)
        assert (a.fmin, a.fmax, a.log_clamp) == (MEL_PRESETS[preset].fmin,
                                                 MEL_PRESETS[preset].fmax,
                                                 MEL_PRESETS[preset].log_clamp)
        assert AudioConfig(mel_preset=preset) == a
    # The default is the official MelGAN recipe, unchanged.
    assert config_from_dict({}).audio == AudioConfig(mel_preset="melgan", fmin=0.0, fmax=None,
                                                     log_clamp=1e-5)


def test_explicit_audio_keys_beat_the_preset(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("audio:\n  mel_preset: hifigan\n  fmax: 11025\n")
    a = load_config(str(path), ["audio.log_clamp=1e-4"]).audio
    assert (a.mel_preset, a.fmin, a.fmax, a.log_clamp) == ("hifigan", 0.0, 11025.0, 1e-4)
    a = config_from_dict({}, ["audio.mel_preset=tacotron2", "audio.fmin=0"]).audio
    assert (a.fmin, a.fmax, a.log_clamp) == (0.0, 7600.0, 1e-10)
    # The saved config holds the resolved numbers: reloading it gives the same features.
    c = config_from_dict({}, ["audio.mel_preset=tacotron2"])
    saved = yaml.safe_load(c.to_yaml())["audio"]
    assert (saved["fmin"], saved["fmax"], saved["log_clamp"]) == (80.0, 7600.0, 1e-10)
    path.write_text(c.to_yaml())
    assert load_config(str(path)) == c


def test_preset_errors_are_clear():
    with pytest.raises(ConfigError) as info:
        config_from_dict({}, ["audio.mel_preset=hifi-gan"])
    assert str(info.value) == ("audio.mel_preset must be one of melgan, hifigan, tacotron2; "
                               "got 'hifi-gan' (did you mean 'hifigan'?)")
    with pytest.raises(ConfigError) as info:
        config_from_dict({}, ["audio.mel_preset=3"])
    assert str(info.value) == "audio.mel_preset: expected a string, got 3"
    # hifigan's fmax 8000 does not fit a 12 kHz rate: the message says where it came from.
    with pytest.raises(ConfigError) as info:
        config_from_dict({}, ["audio.mel_preset=hifigan", "audio.sample_rate=12000"])
    assert str(info.value) == (
        "need 0 <= audio.fmin < audio.fmax <= sample_rate / 2, got fmin=0.0, fmax=8000.0, "
        "sample_rate=12000 (mel_preset hifigan defaults to fmin=0.0, fmax=8000.0; set "
        "audio.fmin / audio.fmax for this sample rate)")
    assert config_from_dict({}, ["audio.mel_preset=hifigan", "audio.sample_rate=12000",
                                 "audio.fmax=6000"]).audio.fmax == 6000.0
    # Only the (n_fft - hop) / 2 padding needs an even n_fft - hop.
    odd = ["audio.hop_length=255", "generator.ratios=[255]", "training.segment_length=2550",
           "data.eval_segment_length=2550"]
    with pytest.raises(ConfigError, match="n_fft - audio.hop_length must be even"):
        config_from_dict({}, odd + ["audio.mel_preset=hifigan"])
    c = config_from_dict({}, odd + ["audio.mel_preset=tacotron2"]).audio
    audio = np.random.default_rng(0).uniform(-0.5, 0.5, 2550).astype("float32")
    assert log_mel_numpy(audio, c).shape == LogMel(c)(audio[None]).shape[1:] == (10, 80)


# ---------------------------------------------------------------- normalisation statistics


def write_stats(path, n_mels=80, seed=0):
    rng = np.random.default_rng(seed)
    stats = np.stack([rng.normal(-3, 1, n_mels), rng.uniform(0.5, 2, n_mels)])
    np.save(path, stats.astype(np.float32))
    return stats.astype(np.float32).astype(np.float64)


def test_stats_normalise_numpy_and_tf(tmp_path, clip):
    stats = write_stats(tmp_path / "stats.npy")
    c = config_from_dict({}, ["audio.mel_preset=tacotron2",
                              f"audio.stats_path={tmp_path / 'stats.npy'}"]).audio
    raw = log_mel_numpy(clip[:25600], c, normalize=False)
    expected = (raw.astype(np.float64) - stats[0]) / stats[1]
    ours_np = log_mel_numpy(clip[:25600], c)
    layer = LogMel(c)
    ours_tf = layer(clip[None, :25600]).numpy()[0]
    assert max_diff(ours_np, expected) <= 1e-5 and max_diff(ours_tf, expected) <= 1e-5
    # The layer keeps the numbers in its config: it does not need the file any more.
    os.remove(tmp_path / "stats.npy")
    clone = LogMel.from_config(layer.get_config())
    np.testing.assert_array_equal(clone(clip[None, :25600]).numpy()[0], ours_tf)
    assert layer.get_config()["stats"] == stats.tolist()
    assert LogMel(AudioConfig()).get_config()["stats"] is None


def test_stats_errors(tmp_path):
    missing = tmp_path / "nope.npy"
    with pytest.raises(ConfigError) as info:
        config_from_dict({}, [f"audio.stats_path={missing}"])
    assert str(info.value) == (
        f"audio.stats_path {missing}: no such file; compute it with `python -m "
        f"tf_melgan.preprocess --config CONFIG --data DATA --output {missing}`")
    write_stats(tmp_path / "64.npy", n_mels=64)
    with pytest.raises(ConfigError) as info:
        config_from_dict({}, [f"audio.stats_path={tmp_path / '64.npy'}"])
    assert str(info.value) == (f"audio.stats_path {tmp_path / '64.npy'}: expected (mean, std) "
                               "of shape (2, 80) for audio.n_mels 80, got shape (2, 64)")
    np.save(tmp_path / "zero.npy", np.stack([np.zeros(80), np.zeros(80)]))
    with pytest.raises(ConfigError, match="standard deviations finite and positive"):
        config_from_dict({}, [f"audio.stats_path={tmp_path / 'zero.npy'}"])
    (tmp_path / "text.npy").write_text("not numpy")
    with pytest.raises(ConfigError, match="not a readable .npy file"):
        config_from_dict({}, [f"audio.stats_path={tmp_path / 'text.npy'}"])


def test_relative_stats_path_is_relative_to_the_yaml_file(tmp_path, monkeypatch):
    (tmp_path / "cfg").mkdir()
    write_stats(tmp_path / "cfg" / "stats.npy")
    (tmp_path / "cfg" / "c.yaml").write_text("audio:\n  stats_path: stats.npy\n")
    monkeypatch.chdir(tmp_path)  # elsewhere: the file's directory counts, not the cwd
    assert load_config("cfg/c.yaml").audio.stats_path == os.path.join("cfg", "stats.npy")
    # An override is relative to the working directory, like data.path.
    write_stats(tmp_path / "other.npy", seed=1)
    c = load_config("cfg/c.yaml", ["audio.stats_path=other.npy"])
    assert c.audio.stats_path == "other.npy"


def short_corpus(folder, clip, n=4, seconds=0.6):
    os.makedirs(folder, exist_ok=True)
    files = []
    for i in range(n):
        path = os.path.join(folder, f"clip{i}.wav")
        start = 20000 + i * 15000
        sf.write(path, clip[start:start + int(seconds * 22050)], 22050)
        files.append(path)
    return files


def test_preprocess_writes_training_split_stats(tmp_path, clip, capsys):
    from tf_melgan.data import split_files
    from tf_melgan.preprocess import main

    files = short_corpus(str(tmp_path / "data"), clip)
    out = tmp_path / "out" / "stats.npy"
    # stats_path pointing at the file about to be written is fine: it is not read.
    rc = main(["preprocess", "--data", str(tmp_path / "data"), "--output", str(out),
               "--set", "audio.mel_preset=tacotron2", "--set", "data.validation_clips=1",
               "--set", f"audio.stats_path={out}"])
    assert rc == 0
    assert "3/3" in capsys.readouterr().out  # the progress bar, over the 3 training clips
    stats = np.load(out)
    assert stats.shape == (2, 80) and stats.dtype == np.float32
    train, held_out = split_files(sorted(files), 1)
    c = AudioConfig(mel_preset="tacotron2")
    mels = np.concatenate([log_mel_numpy(load_audio(f, 22050), c, full=True, normalize=False)
                           for f in train]).astype(np.float64)
    assert mels.shape[0] == 3 * (int(0.6 * 22050) // 256 + 1)
    np.testing.assert_allclose(stats[0], mels.mean(axis=0), atol=1e-5)
    np.testing.assert_allclose(stats[1], mels.std(axis=0), rtol=1e-5)
    # The training config can now use it.
    c = config_from_dict({}, ["audio.mel_preset=tacotron2", f"audio.stats_path={out}"])
    normalised = log_mel_numpy(load_audio(train[0], 22050), c.audio)
    assert abs(float(normalised.mean())) < 1.0


def test_preprocess_errors(tmp_path, capsys):
    from tf_melgan.preprocess import main

    assert main(["preprocess", "--data", str(tmp_path), "--output", str(tmp_path / "s.npy"),
                 "--quiet"]) == 1
    assert capsys.readouterr().err.startswith("data error: no audio files")
    assert main(["preprocess", "--output", "s.npy", "--set", "audio.mel_preset=x"]) == 1
    assert capsys.readouterr().err.startswith("config error: audio.mel_preset must be one of")
    assert not (tmp_path / "s.npy").exists()


def test_stats_travel_with_the_model_dir(tmp_path):
    from tf_melgan.checkpoint import load_model_config
    from tf_melgan.mel_stats import store_mel_stats

    stats = write_stats(tmp_path / "stats.npy")
    config = config_from_dict({}, ["audio.mel_preset=tacotron2",
                                   f"audio.stats_path={tmp_path / 'stats.npy'}"])
    model_dir = tmp_path / "model"
    saved = store_mel_stats(config, str(model_dir))  # what train writes as config.yaml
    assert config.audio.stats_path == str(tmp_path / "stats.npy")  # unchanged
    assert saved.audio.stats_path == "mel_stats.npy"
    (model_dir / "config.yaml").write_text(saved.to_yaml())
    os.remove(tmp_path / "stats.npy")
    moved = tmp_path / "moved"
    os.rename(model_dir, moved)
    loaded = load_model_config(str(moved))
    assert loaded.audio.stats_path == str(moved / "mel_stats.npy")
    np.testing.assert_array_equal(LogMel(loaded.audio)._stats, stats)
    # Resuming from the model dir's own config: nothing to copy, same config written.
    assert store_mel_stats(loaded, str(moved)).to_yaml() == saved.to_yaml()
    assert store_mel_stats(config_from_dict({}), str(moved)) == config_from_dict({})


# ---------------------------------------------------------------- training with each preset


@pytest.mark.parametrize("preset", PRESETS)
def test_one_train_step_per_preset(tiny_config, clip_path, tmp_path, preset):
    from tf_melgan.data import AudioSource, train_dataset, validation_dataset
    from tf_melgan.model import MelGAN, make_optimizer
    from tf_melgan.mel_stats import compute_stats

    overrides = [f"audio.mel_preset={preset}"]
    if preset == "tacotron2":  # with normalisation, as ParallelWaveGAN trains
        stats, _ = compute_stats([clip_path], AudioConfig(mel_preset=preset), verbose=False)
        np.save(tmp_path / "stats.npy", stats.astype(np.float32))
        overrides.append(f"audio.stats_path={tmp_path / 'stats.npy'}")
    config = tiny_config(*overrides)
    source = AudioSource([clip_path], 22050, verbose=False)
    mel, audio = next(iter(train_dataset(source, config)))
    assert mel.shape == (2, 2048 // 256, 80) and audio.shape == (2, 2048)
    keras.utils.set_random_seed(0)
    gan = MelGAN.from_config_dataclass(config)
    gan.compile(make_optimizer(config.g_optimizer), make_optimizer(config.d_optimizer))
    # The model's mel (for the mel-L1 metric) is the data pipeline's.
    np.testing.assert_allclose(gan.log_mel(audio).numpy(), mel.numpy(), atol=1e-6)
    logs = gan.train_step((mel, audio))
    assert all(np.isfinite(float(v)) for v in logs.values()), logs
    val = validation_dataset(load_audio(clip_path, 22050)[None, :4096], config)
    val_mel, _ = next(iter(val))
    assert val_mel.shape == (1, 16, 80)
    assert np.isfinite(float(gan.test_step(next(iter(val)))["mel_l1"]))


# ---------------------------------------------------------------- shipped configs


@pytest.mark.parametrize("path", CONFIGS, ids=[os.path.basename(p) for p in CONFIGS])
def test_every_config_loads_and_its_generator_maps_frames_to_hop_samples(path):
    from tf_melgan.builders import build_generator

    c = load_config(path)
    a = c.audio
    fourier = c.generator.head == "fourier"  # no upsampling: ratios unused
    assert fourier or np.prod(c.generator.ratios) == a.hop_length
    assert c.training.segment_length % a.hop_length == 0
    assert c.data.eval_segment_length % a.hop_length == 0
    g = build_generator(c)
    frames = max(6, g.min_frames)
    mel = np.random.default_rng(0).normal(-3, 1, (1, frames, a.n_mels)).astype("float32")
    assert g(mel).shape == (1, frames * a.hop_length)
    # The data's mel has segment_length // hop frames, which the generator turns back into
    # segment_length samples.
    assert num_frames(c.training.segment_length, a) * a.hop_length == c.training.segment_length
    if fourier:
        return
    wrong = [5, 5, 4, 2] if a.hop_length != 200 else [8, 8, 2, 2]
    with pytest.raises(ConfigError) as info:
        load_config(path, [f"generator.ratios={wrong}"])
    assert str(info.value) == (
        f"{path}: the product of generator.ratios {wrong} is {int(np.prod(wrong))}, but "
        f"audio.hop_length is {a.hop_length}; they must be equal")


def test_rate_configs_have_the_intended_framing():
    expected = {"16k_hop200.yaml": (16000, 200, 800, [5, 5, 4, 2]),
                "16k_hop256.yaml": (16000, 256, 1024, [8, 8, 2, 2]),
                "24k_hop300.yaml": (24000, 300, 1200, [5, 5, 4, 3]),
                "24k_hop256.yaml": (24000, 256, 1024, [8, 8, 2, 2])}
    for name, (sr, hop, n_fft, ratios) in expected.items():
        c = load_config(os.path.join(ROOT, "configs", name))
        a = c.audio
        assert (a.sample_rate, a.hop_length, a.n_fft, a.win_length) == (sr, hop, n_fft, n_fft)
        assert c.generator.ratios == ratios and a.mel_preset == "melgan"
        assert c.training.segment_length // hop == 32  # as the paper's 8192 / 256
    assert load_config(os.path.join(ROOT, "configs", "hifigan_mel.yaml")).audio.fmax == 8000.0
    a = load_config(os.path.join(ROOT, "configs", "tacotron2_mel.yaml")).audio
    assert (a.fmin, a.fmax, a.log_clamp) == (80.0, 7600.0, 1e-10)
