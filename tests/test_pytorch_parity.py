"""Parity with a PyTorch MelGAN (tests/torch_melgan.py, the official module layout) and the
official-checkpoint importer (tf_melgan.import_pytorch)."""

import os
import pickle
import subprocess

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch is not installed (pip install torch, "
                            "CPU build); the parity and import tests need it")

import tensorflow as tf  # noqa: E402

import torch_melgan as tm  # noqa: E402
from tf_melgan.audio import LogMel, load_audio, log_mel_numpy  # noqa: E402
from tf_melgan.config import AudioConfig, load_config  # noqa: E402
from tf_melgan.import_pytorch import (  # noqa: E402
    CheckpointImportError, generator_from_state_dict, import_state_dicts, read_state_dict)
from tf_melgan.model import MelGAN, make_optimizer  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Foo:  # a custom class: torch.load(weights_only=True) must refuse to unpickle it
    pass


def max_diff(a, b):
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


def restore_model_dir(model_dir):
    """Builds the GAN from MODEL_DIR/config.yaml and restores the latest checkpoint the way
    tf_melgan.train does, asserting that every saved value has a home and vice versa."""
    config = load_config(os.path.join(model_dir, "config.yaml"))
    gan = MelGAN.from_config_dataclass(config)
    gan.compile(make_optimizer(config.g_optimizer), make_optimizer(config.d_optimizer))
    checkpoint = tf.train.Checkpoint(generator=gan.generator, discriminator=gan.discriminator,
                                     g_optimizer=gan.g_optimizer, d_optimizer=gan.d_optimizer)
    manager = tf.train.CheckpointManager(checkpoint, os.path.join(model_dir, "checkpoints"), 3)
    assert manager.latest_checkpoint.endswith("ckpt-0")
    checkpoint.restore(manager.latest_checkpoint).assert_consumed()
    assert int(gan.g_optimizer.iterations.numpy()) == 0
    return config, gan


@pytest.fixture(scope="module")
def clip(clip_path):
    return load_audio(clip_path, 22050)


def torch_mel(audio, **kwargs):
    with torch.no_grad():
        return tm.Audio2Mel(**kwargs)(torch.from_numpy(audio)[None, None])  # [1, n_mels, T]


@pytest.fixture(scope="module")
def paper(tmp_path_factory):
    """Seeded random paper-size torch models, saved as official state_dicts and imported."""
    torch.manual_seed(0)
    g = tm.randomize_(tm.Generator(80, 32, 3), seed=1).eval()
    d = tm.randomize_(tm.Discriminator(3, 16, 4, 4), seed=2).eval()
    tmp = tmp_path_factory.mktemp("paper")
    torch.save(g.state_dict(), tmp / "netG.pt")
    torch.save(d.state_dict(), tmp / "netD.pt")
    saved = import_state_dicts(str(tmp / "netG.pt"), str(tmp / "model"), str(tmp / "netD.pt"))
    assert saved.endswith("ckpt-0")
    config, gan = restore_model_dir(str(tmp / "model"))
    return dict(torch_g=g, torch_d=d, config=config, gan=gan, dir=tmp)


def test_torch_reference_has_the_official_layout():
    g, d = tm.Generator(80, 32, 3), tm.Discriminator()
    g_sd, d_sd = g.state_dict(), d.state_dict()
    assert len(g_sd) == tm.GENERATOR_TENSORS == 126
    assert len(d_sd) == tm.DISCRIMINATOR_TENSORS == 63
    assert {k: tuple(v.shape) for k, v in g_sd.items()} == tm.generator_shapes()
    for key, shape in [("model.1.weight_v", (512, 80, 7)), ("model.1.weight_g", (512, 1, 1)),
                       ("model.3.weight_v", (512, 256, 16)), ("model.3.weight_g", (512, 1, 1)),
                       ("model.4.block.2.weight_v", (256, 256, 3)),
                       ("model.24.weight_v", (1, 32, 7))]:
        assert tuple(g_sd[key].shape) == shape, key
    assert tuple(d_sd["model.disc_2.model.layer_1.0.weight_v"].shape) == (64, 4, 41)
    assert "model.disc_0.model.layer_0.1.weight_g" in d_sd
    assert "model.disc_0.model.layer_6.weight_v" in d_sd
    # The reference's 4,260,257 counts the generator without weight norm's g vectors.
    n_g = sum(v.numel() for k, v in g_sd.items() if not k.endswith("weight_g"))
    assert n_g == 4_260_257


def test_imported_config(paper):
    c = paper["config"]
    assert (c.audio.n_mels, c.audio.hop_length) == (80, 256)
    assert (c.generator.ngf, c.generator.ratios, c.generator.n_residual_layers) == \
        (32, [8, 8, 2, 2], 3)
    d = c.discriminator
    assert (d.num_scales, d.ndf, d.n_layers, d.downsampling, d.max_channels) == \
        (3, 16, 4, 4, 1024)
    assert len(paper["gan"].generator.trainable_variables) == 126
    assert len(paper["gan"].discriminator.trainable_variables) == 63


def test_generator_matches_torch_paper_config(paper, clip):
    mel = torch_mel(clip[11025:11025 + 96 * 256])  # 96 frames of speech
    with torch.no_grad():
        expected = paper["torch_g"](mel)[:, 0].numpy()
    ours = paper["gan"].generator(np.transpose(mel.numpy(), (0, 2, 1))).numpy()
    assert ours.shape == expected.shape == (1, 96 * 256)
    diff = max_diff(ours, expected)
    print(f"generator (paper config) max abs diff {diff:.3g}, output peak "
          f"{np.abs(expected).max():.3g}")
    assert diff <= 1e-4
    assert np.abs(expected).max() > 1e-2  # not a trivially small output


def test_load_generator_reads_the_imported_weights(paper):
    """tf_melgan.checkpoint.load_generator(DIR) (best_generator.weights.h5) gives the
    imported generator, folded or not."""
    from tf_melgan.checkpoint import load_generator
    mel = np.random.default_rng(0).normal(-2, 1, size=(1, 20, 80)).astype("float32")
    expected = paper["gan"].generator(mel).numpy()
    for fold in (False, True):
        generator, _ = load_generator(str(paper["dir"] / "model"), fold=fold)
        assert max_diff(generator(mel).numpy(), expected) <= 1e-5


def test_load_generator_latest_restores_every_weight(paper):
    from tf_melgan.checkpoint import load_generator
    generator, _ = load_generator(str(paper["dir"] / "model"), which="latest", fold=False)
    wrong = [a.path for a, b in zip(generator.weights, paper["gan"].generator.weights)
             if not np.array_equal(a.numpy(), b.numpy())]
    assert not wrong, f"{len(wrong)} of {len(generator.weights)} tensors not restored"


def test_generator_matches_torch_odd_ratios(clip, tmp_path):
    """hop 300 = 5*5*4*3: odd ratios use output_padding 1; 64 mels, ngf 16, 2 residual layers."""
    torch.manual_seed(0)
    g = tm.randomize_(tm.Generator(64, 16, 2, ratios=(5, 5, 4, 3)), seed=3).eval()
    torch.save(g.state_dict(), tmp_path / "netG.pt")
    import_state_dicts(str(tmp_path / "netG.pt"), str(tmp_path / "model"))
    config, gan = restore_model_dir(str(tmp_path / "model"))
    assert config.generator.ratios == [5, 5, 4, 3] and config.audio.hop_length == 300
    assert config.audio.n_mels == 64 and config.generator.n_residual_layers == 2
    assert config.training.segment_length % 300 == 0
    mel = torch_mel(clip[11025:11025 + 80 * 300], hop_length=300, n_mel_channels=64)
    with torch.no_grad():
        expected = g(mel)[:, 0].numpy()
    ours = gan.generator(np.transpose(mel.numpy(), (0, 2, 1))).numpy()
    assert ours.shape == expected.shape == (1, 80 * 300)
    diff = max_diff(ours, expected)
    print(f"generator (ratios 5,5,4,3) max abs diff {diff:.3g}")
    assert diff <= 1e-4


def test_discriminator_features_match_torch(paper, clip):
    audio = clip[11025:11025 + 8192][None]
    with torch.no_grad():
        expected = paper["torch_d"](torch.from_numpy(audio)[:, None])
    ours = paper["gan"].discriminator(audio)
    assert len(ours) == len(expected) == 3
    worst = 0.0
    for scale, (ours_s, exp_s) in enumerate(zip(ours, expected)):
        assert len(ours_s) == len(exp_s) == 7
        for layer, (a, b) in enumerate(zip(ours_s, exp_s)):
            b = b.numpy().transpose(0, 2, 1)  # [B, C, T] -> [B, T, C]
            assert a.shape == b.shape, (scale, layer)
            rel = max_diff(a, b) / max(float(np.abs(b).max()), 1e-6)
            worst = max(worst, rel)
            assert rel <= 1e-4, (scale, layer, rel)
    print(f"discriminator: worst feature max abs diff / feature peak {worst:.3g}")


def test_log_mel_matches_torch_audio2mel(clip):
    audio = clip[: len(clip) // 256 * 256]
    config = AudioConfig()
    ours_np = log_mel_numpy(audio, config)
    ours_tf = LogMel(config)(audio[None])[0].numpy()
    official = torch_mel(audio)[0].numpy().T  # float32, torch's own float32 Hann window
    assert ours_np.shape == ours_tf.shape == official.shape == (len(audio) // 256, 80)
    # The recipe is the same: torch's Audio2Mel in float64 with the same (correctly rounded)
    # window agrees to float32 output rounding.
    a2m = tm.Audio2Mel().double()
    a2m.window = torch.from_numpy(np.hanning(1025)[:-1].astype(np.float32).astype(np.float64))
    with torch.no_grad():
        exact = a2m(torch.from_numpy(audio.astype(np.float64))[None, None])[0].numpy().T
    d_exact = max(max_diff(ours_np, exact), max_diff(ours_tf, exact))
    assert d_exact <= 1e-6
    # Against the float32 official features the difference is torch's rounding (float32
    # STFT and a Hann window computed in float32, 1.8e-7 off): it shows only in bands
    # > 3 decades (60 dB) below the frame's loudest (up to ~1e-4 at 60-80 dB, more near
    # the 1e-5 clamp).
    for ours in (ours_np, ours_tf):
        d = np.abs(ours.astype(np.float64) - official)
        loud = ours - ours.max(axis=1, keepdims=True) > -3
        print(f"log-mel vs float32 Audio2Mel: max {d.max():.3g}, mean {d.mean():.3g}, "
              f"99th pct {np.quantile(d, 0.99):.3g}, max within 60 dB of the frame peak "
              f"{d[loud].max():.3g}; vs float64 same window {d_exact:.3g}")
        assert d[loud].max() <= 1e-4
        assert np.quantile(d, 0.99) <= 1e-4
        assert d.mean() <= 1e-5
        assert d.max() <= 2e-3  # seen: 1e-4 .. 6e-4 over 12 LJ Speech clips


# ---------------------------------------------------------------------------- bad files


@pytest.fixture(scope="module")
def small_state():
    torch.manual_seed(0)
    return tm.randomize_(tm.Generator(16, 4, 1, ratios=(4, 4)), seed=4).state_dict()


def write_bad(kind, path, small_state):
    if kind == "text":
        path.write_text("this is not a checkpoint\n")
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "missing_key":
        state = dict(small_state)
        del state["model.1.weight_g"]
        torch.save(state, path)
    elif kind == "wrong_shape":
        state = dict(small_state)
        state["model.4.block.2.weight_v"] = torch.zeros(8, 8, 5)
        torch.save(state, path)
    elif kind == "unexpected_key":
        torch.save({**small_state, "model.1.extra": torch.zeros(1)}, path)
    elif kind == "custom_class":
        with open(path, "wb") as f:
            pickle.dump({"model.1.weight_v": Foo()}, f)
    elif kind == "custom_class_torch":
        torch.save({**small_state, "meta": Foo()}, path)
    elif kind == "not_a_dict":
        torch.save([torch.zeros(3)], path)
    elif kind == "ambiguous":
        torch.save({"state_dict": small_state, "model": small_state}, path)
    elif kind == "discriminator":
        torch.save(tm.Discriminator(1, 4, 1, 4, 16).state_dict(), path)
    elif kind == "nan":
        state = dict(small_state)
        state["model.1.bias"] = torch.full_like(state["model.1.bias"], float("nan"))
        torch.save(state, path)
    elif kind == "missing_file":
        pass
    else:
        raise AssertionError(kind)


BAD = {
    "text": "not a PyTorch checkpoint",
    "empty": "not a PyTorch checkpoint",
    "missing_key": "missing 1 key(s): model.1.weight_g",
    "wrong_shape": "wrong shape: model.4.block.2.weight_v is (8, 8, 5), expected (8, 8, 3)",
    "unexpected_key": "unexpected key(s): model.1.extra",
    "custom_class": "loading it would run code",
    "custom_class_torch": "loading it would run code",
    "not_a_dict": "not a state_dict (the file holds a list",
    "ambiguous": "ambiguous",
    "discriminator": "this is a discriminator state_dict",
    "nan": "NaN",
    "missing_file": "no such file",
}


@pytest.mark.parametrize("kind", sorted(BAD))
def test_bad_files_are_refused(kind, tmp_path, small_state):
    path = tmp_path / "bad.pt"
    write_bad(kind, path, small_state)
    with pytest.raises(CheckpointImportError) as info:
        import_state_dicts(str(path), str(tmp_path / "out"))
    message = str(info.value)
    assert BAD[kind] in message
    assert "\n" not in message and message.startswith(str(path))
    assert not (tmp_path / "out").exists()  # nothing written


def test_accepted_wrappers(tmp_path, small_state):
    """{'model': sd, 'step': 3}, {'state_dict': sd}, 'module.' prefixes and the
    parametrizations weight-norm keys all import to the same weights."""
    reference, _ = generator_from_state_dict(read_state_dict_from(tmp_path / "a.pt",
                                                                  small_state))
    variants = {
        "wrapped_model": {"model": small_state, "step": 3, "note": "x"},
        "wrapped_state_dict": {"state_dict": small_state},
        "data_parallel": {f"module.{k}": v for k, v in small_state.items()},
        "parametrizations": {
            k.replace(".weight_g", ".parametrizations.weight.original0")
             .replace(".weight_v", ".parametrizations.weight.original1"): v
            for k, v in small_state.items()},
    }
    for name, obj in variants.items():
        g, sizes = generator_from_state_dict(read_state_dict_from(tmp_path / f"{name}.pt",
                                                                  obj))
        assert sizes == dict(n_mels=16, ngf=4, ratios=[4, 4], n_residual_layers=1), name
        for a, b in zip(g.weights, reference.weights):
            np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=name)


def read_state_dict_from(path, obj):
    torch.save(obj, path)
    return read_state_dict(str(path))


def test_refuses_to_overwrite_a_model_dir(tmp_path, small_state):
    torch.save(small_state, tmp_path / "netG.pt")
    import_state_dicts(str(tmp_path / "netG.pt"), str(tmp_path / "model"))
    with pytest.raises(CheckpointImportError, match="already holds a model"):
        import_state_dicts(str(tmp_path / "netG.pt"), str(tmp_path / "model"))


def run_module(python, module, *args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    return subprocess.run([python, "-m", module, *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def test_cli_refuses_without_traceback(python, tmp_path):
    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        pickle.dump({"x": Foo()}, f)
    result = run_module(python, "tf_melgan.import_pytorch", "--checkpoint", str(path),
                        "--output", str(tmp_path / "out"))
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("import error:")]
    assert len(lines) == 1 and "loading it would run code" in lines[0], result.stderr


def test_imported_model_dir_resumes_training(python, tmp_path, audio_dir):
    """CLI import (small G and D), then `tf_melgan.train` resumes from ckpt-0 to step 2."""
    torch.manual_seed(0)
    g = tm.randomize_(tm.Generator(80, 8, 1), seed=5)
    d = tm.randomize_(tm.Discriminator(2, 4, 3, 4, 32), seed=6)
    torch.save(g.state_dict(), tmp_path / "netG.pt")
    torch.save(d.state_dict(), tmp_path / "netD.pt")
    model_dir = tmp_path / "model"
    result = run_module(python, "tf_melgan.import_pytorch", "--checkpoint",
                        str(tmp_path / "netG.pt"), "--discriminator", str(tmp_path / "netD.pt"),
                        "--output", str(model_dir))
    assert result.returncode == 0, result.stderr
    assert (model_dir / "config.yaml").is_file()
    result = run_module(python, "tf_melgan.train", "--model_dir", str(model_dir),
                        "--set", "training.steps=2", "--set", "training.batch_size=2",
                        "--set", "training.segment_length=8192", "--set", f"data.path={audio_dir}",
                        "--set", "data.validation_clips=1", "--set", "training.steps_per_epoch=2",
                        "--set", "data.eval_segment_length=16384", "--verbose", "0")
    assert result.returncode == 0, result.stderr[-3000:]
    resumed = [line for line in result.stdout.splitlines() if "resumed from" in line]
    assert resumed and resumed[0].endswith("ckpt-0"), result.stdout
    assert "training finished at step 2 of 2 (2 steps in " in result.stdout
    assert tf.train.latest_checkpoint(str(model_dir / "checkpoints")).endswith("ckpt-2")
    config = load_config(str(model_dir / "config.yaml"))
    assert (config.generator.ngf, config.generator.n_residual_layers) == (8, 1)
    assert (config.discriminator.num_scales, config.discriminator.ndf,
            config.discriminator.n_layers, config.discriminator.max_channels) == (2, 4, 3, 32)


def test_imported_model_dir_feeds_synthesize_export_and_tflite(tmp_path, clip, audio_dir):
    """The importer's model dir is what the other tools take: synthesis, SavedModel export
    and LiteRT conversion all reproduce the PyTorch generator."""
    import sys
    sys.path.insert(0, ROOT)  # tflite/ is a folder of scripts at the repo root
    from tf_melgan.deploy.saved_model import export_saved_model
    from tf_melgan.synthesize import synthesize
    from tf_melgan.deploy.convert import convert

    torch.manual_seed(0)
    g = tm.randomize_(tm.Generator(80, 8, 1), seed=7).eval()
    torch.save(g.state_dict(), tmp_path / "netG.pt")
    model_dir = str(tmp_path / "model")
    import_state_dicts(str(tmp_path / "netG.pt"), model_dir)
    mel = log_mel_numpy(clip[: 64 * 256], AudioConfig())  # [64, 80]
    with torch.no_grad():
        expected = g(torch.from_numpy(np.ascontiguousarray(mel.T[None]))).numpy().reshape(-1)
    assert max_diff(synthesize(model_dir, mel), expected) <= 1e-4
    saved = export_saved_model(model_dir, str(tmp_path / "saved"))
    served = tf.saved_model.load(saved).signatures["serving_default"](mel=tf.constant(mel[None]))
    assert max_diff(served["audio"].numpy()[0], expected) <= 1e-4
    out = str(tmp_path / "vocoder.tflite")
    convert(model_dir, out, "float32", data=audio_dir, num_validation=1, validation_frames=64)
    assert max_diff(synthesize(out, mel), expected) <= 1e-4
