"""The GAN step: official update order against a hand-written reference; learning progress."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_melgan.data import AudioSource, train_dataset
from tf_melgan.model import MelGAN, make_optimizer


def build(config, seed=0):
    keras.utils.set_random_seed(seed)
    gan = MelGAN.from_config_dataclass(config)
    gan.compile(make_optimizer(config.g_optimizer), make_optimizer(config.d_optimizer))
    return gan


def copy_weights(src, dst):
    for a, b in zip(src.generator.weights + src.discriminator.weights,
                    dst.generator.weights + dst.discriminator.weights):
        b.assign(a)


def reference_step(gan, mel, audio, lambda_feat, n_layers, updated_d_for_g=True,
                   lambda_mel=0.0):
    """One official MelGAN step, written out from the paper / official train.py."""
    G, D = gan.generator, gan.discriminator
    with tf.GradientTape() as g_tape:
        fake = G(mel, training=True)
        with g_tape.stop_recording():
            with tf.GradientTape() as d_tape:
                real_out = D(audio)
                fake_det = D(tf.stop_gradient(fake))
                d_loss = sum(tf.reduce_mean(tf.nn.relu(1 - r[-1])) +
                             tf.reduce_mean(tf.nn.relu(1 + f[-1]))
                             for r, f in zip(real_out, fake_det))
            d_grads = d_tape.gradient(d_loss, D.trainable_variables)
            before = [v.numpy() for v in D.trainable_variables]
            gan.d_optimizer.apply(d_grads, D.trainable_variables)
            if not updated_d_for_g:  # the wrong order, to show the test can tell
                updated = [v.numpy() for v in D.trainable_variables]
                for v, b in zip(D.trainable_variables, before):
                    v.assign(b)
        fake_out = D(fake)
        if not updated_d_for_g:
            with g_tape.stop_recording():
                for v, u in zip(D.trainable_variables, updated):
                    v.assign(u)
        adv = sum(-tf.reduce_mean(f[-1]) for f in fake_out)
        weight = 4.0 / (n_layers + 1) / len(real_out)
        fm = sum(weight * tf.reduce_mean(tf.abs(tf.stop_gradient(a) - b))
                 for r, f in zip(real_out, fake_out) for a, b in zip(r[:-1], f[:-1]))
        g_loss = adv + lambda_feat * fm
        if lambda_mel:  # our optional HiFi-GAN-style term
            g_loss += lambda_mel * tf.reduce_mean(tf.abs(gan.log_mel(fake) - mel))
    gan.g_optimizer.apply(g_tape.gradient(g_loss, G.trainable_variables),
                          G.trainable_variables)


@pytest.fixture(scope="module")
def batch(clip_path):
    from tf_melgan.audio import LogMel, load_audio
    audio = load_audio(clip_path, 22050)[20000:20000 + 2 * 2048].reshape(2, 2048)
    return LogMel()(audio), tf.constant(audio)


@pytest.mark.parametrize("lambda_mel", [0.0, 45.0])
def test_train_step_matches_reference_order(tiny_config, batch, lambda_mel):
    config = tiny_config(f"loss.lambda_mel={lambda_mel}")
    mel, audio = batch
    ours, ref, wrong = build(config), build(config, seed=1), build(config, seed=2)
    copy_weights(ours, ref)
    copy_weights(ours, wrong)
    start = [v.numpy() for v in ours.generator.weights + ours.discriminator.weights]
    ours.train_step((mel, audio))
    n_layers = config.discriminator.n_layers
    reference_step(ref, mel, audio, config.loss.lambda_feat, n_layers, lambda_mel=lambda_mel)
    reference_step(wrong, mel, audio, config.loss.lambda_feat, n_layers,
                   updated_d_for_g=False, lambda_mel=lambda_mel)
    if lambda_mel:  # the mel term changes G's step: against a reference without it
        no_mel = build(config, seed=3)
        for a, b in zip(start, no_mel.generator.weights + no_mel.discriminator.weights):
            b.assign(a)
        reference_step(no_mel, mel, audio, config.loss.lambda_feat, n_layers)
        assert max(np.abs(a.numpy() - b.numpy()).max() for a, b in
                   zip(ours.generator.weights, no_mel.generator.weights)) > 1e-5
    for a, b, s in zip(ours.generator.weights + ours.discriminator.weights,
                       ref.generator.weights + ref.discriminator.weights, start):
        # D's biases can get exactly zero gradient: with |D| < 1 the hinge pushes real and
        # fake scores by equal and opposite amounts, which cancel in a bias.
        if a.path.startswith("generator") or not a.path.endswith("/bias"):
            assert not np.array_equal(a.numpy(), s), f"{a.path} did not move"
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5, err_msg=a.path)
    if lambda_mel:
        return  # the mel term dominates G's gradient; the order is checked without it
    # Scoring the fake with the D from *before* its update moves G elsewhere.
    diffs = [np.abs(a.numpy() - w.numpy()).max()
             for a, w in zip(ours.generator.weights, wrong.generator.weights)]
    assert max(diffs) > 1e-5
    np.testing.assert_allclose(  # while D itself is the same
        ours.discriminator.weights[0].numpy(), wrong.discriminator.weights[0].numpy(), atol=1e-6)


def test_tiny_generator_learns_on_one_clip(tiny_config, clip_path):
    """300 steps on one clip take the held-out log-mel L1 from ~2.7 (near-silent output)
    to ~1.3 here; we require at least a 30% drop."""
    config = tiny_config("discriminator.num_scales=3", "discriminator.max_channels=64",
                         "training.batch_size=4", "training.segment_length=4096")
    gan = build(config)
    source = AudioSource([clip_path], 22050, verbose=False)
    mel_clip = gan.log_mel(source.clip(0)[None, :65536])

    def held_out_l1():
        return float(tf.reduce_mean(tf.abs(gan.log_mel(gan.generator(mel_clip)) - mel_clip)))

    before = held_out_l1()
    history = gan.fit(train_dataset(source, config), epochs=3, steps_per_epoch=100, verbose=0)
    after = held_out_l1()
    assert before > 2.0
    assert after < 0.7 * before, (before, after, history.history)
    assert history.history["mel_l1"][-1] < 0.7 * history.history["mel_l1"][0] + 0.3


def test_mixed_bfloat16_step_keeps_float32_weights(tiny_config, batch):
    """The CPU mixed-precision mode: bf16 compute, float32 variables, finite losses, and
    the step lands close to the float32 one."""
    from tf_melgan.distribute import set_precision
    config = tiny_config("training.mixed_precision=mixed_bfloat16")
    mel, audio = batch
    reference = build(config)
    start = [v.numpy() for v in reference.generator.weights]
    reference.train_step((mel, audio))
    try:
        # 'auto' is bf16 on a CPU and fp16 on a GPU: this test is the CPU mode, set directly
        # (test_auto_precision_follows_the_device covers the choice)
        assert set_precision("mixed_bfloat16") == "mixed_bfloat16"
        gan = build(config)
        assert gan.generator.compute_dtype == "bfloat16"
        logs = gan.train_step((mel, audio))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert all(v.dtype == "float32" for v in gan.generator.weights)
    assert all(np.isfinite(float(v)) for v in logs.values())
    # Same init (same seed). Adam's first step is ~lr * sign(gradient): the bf16 step must
    # move the generator's weights in the float32 step's direction.
    ours = np.concatenate([(v.numpy() - s).ravel() for v, s in zip(gan.generator.weights, start)])
    ref = np.concatenate([(v.numpy() - s).ravel()
                          for v, s in zip(reference.generator.weights, start)])
    moved = np.abs(ref) > 1e-6
    agree = np.mean(np.sign(ours[moved]) == np.sign(ref[moved]))
    assert moved.mean() > 0.9 and agree > 0.9, (moved.mean(), agree)


@pytest.mark.parametrize("adv_weights,fm_weights", [((1.0, 1.0), (1.0, 1.0)),
                                                   ((0.5, 2.0), (3.0, 0.1))])
def test_train_step_with_period_discriminator_and_stft_loss(tiny_config, batch, adv_weights,
                                                            fm_weights):
    """Both discriminators' hinge losses in D's update, both feature-matching terms and the
    MR-STFT term in G's, each discriminator's terms times its loss.adversarial_weights /
    feature_weights, against a hand-written step."""
    from tf_melgan.losses import multi_resolution_stft_loss
    config = tiny_config("discriminator.periods=[2, 3]", "discriminator.period_channels=2",
                         "loss.lambda_stft=2.0", "loss.stft_resolutions=[[512, 64, 256]]",
                         f"loss.adversarial_weights=[{adv_weights[0]}, {adv_weights[1]}, 1]",
                         f"loss.feature_weights=[{fm_weights[0]}, {fm_weights[1]}, 1]")
    mel, audio = batch
    ours, ref = build(config), build(config, seed=1)
    assert ours.period_discriminator is not None
    for a, b in zip(ours.weights, ref.weights):
        b.assign(a)
    start = [v.numpy() for v in ours.period_discriminator.weights]
    logs = ours.train_step((mel, audio))
    G, ds = ref.generator, [ref.discriminator, ref.period_discriminator]
    d_vars = [v for d in ds for v in d.trainable_variables]
    with tf.GradientTape() as g_tape:
        fake = G(mel, training=True)
        with g_tape.stop_recording():
            with tf.GradientTape() as d_tape:
                real_outs = [d(audio) for d in ds]
                d_loss = sum(w * (tf.reduce_mean(tf.nn.relu(1 - r[-1])) +
                                  tf.reduce_mean(tf.nn.relu(1 + f[-1])))
                             for d, real_out, w in zip(ds, real_outs, adv_weights)
                             for r, f in zip(real_out, d(tf.stop_gradient(fake))))
            ref.d_optimizer.apply(d_tape.gradient(d_loss, d_vars), d_vars)
        g_loss = 0.0
        for d, real_out, n_layers, w_adv, w_fm in zip(
                ds, real_outs, [config.discriminator.n_layers, 4], adv_weights, fm_weights):
            fake_out = d(fake)
            weight = 4.0 / (n_layers + 1) / len(real_out)
            g_loss += w_adv * sum(-tf.reduce_mean(f[-1]) for f in fake_out)
            g_loss += 10.0 * w_fm * sum(weight * tf.reduce_mean(tf.abs(tf.stop_gradient(a) - b))
                                        for r, f in zip(real_out, fake_out)
                                        for a, b in zip(r[:-1], f[:-1]))
        g_loss += 2.0 * multi_resolution_stft_loss(fake, audio, [[512, 64, 256]])[0]
    ref.g_optimizer.apply(g_tape.gradient(g_loss, G.trainable_variables), G.trainable_variables)
    assert np.isclose(float(logs["d_loss"]), float(d_loss), rtol=1e-5)
    assert np.isclose(float(logs["g_loss"]), float(g_loss), rtol=1e-5)
    assert float(logs["stft"]) > 0
    for a, b in zip(ours.weights, ref.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5, err_msg=a.path)
    assert any(not np.array_equal(v.numpy(), s)
               for v, s in zip(ours.period_discriminator.weights, start))


def test_generator_only_step_leaves_the_discriminators_alone(tiny_config, batch):
    """Before discriminator_start_step: G takes a step on its reconstruction loss alone."""
    config = tiny_config("discriminator.periods=[2]", "discriminator.period_channels=2",
                         "loss.lambda_mel=45", "training.discriminator_start_step=10")
    mel, audio = batch
    gan = build(config)
    gan.generator_only = True
    d_before = [v.numpy() for v in gan.d_variables()]
    g_before = [v.numpy() for v in gan.generator.weights]
    with tf.GradientTape() as tape:
        loss = 45.0 * tf.reduce_mean(tf.abs(gan.log_mel(gan.generator(mel, training=True)) - mel))
    grads = tape.gradient(loss, gan.generator.trainable_variables)
    logs = gan.train_step((mel, audio))
    assert "d_loss" not in logs and np.isclose(float(logs["g_loss"]), float(loss), rtol=1e-5)
    assert all(np.array_equal(v.numpy(), b) for v, b in zip(gan.d_variables(), d_before))
    # Adam's first step moves every weight with a gradient by ~lr against its sign
    for v, b, g in zip(gan.generator.trainable_variables, g_before, grads):
        moved = v.numpy() - b
        big = np.abs(g.numpy()) > 1e-6
        assert np.all(np.sign(moved[big]) == -np.sign(g.numpy()[big])), v.path


@pytest.mark.parametrize("gpus, expected", [([], "mixed_bfloat16"), (["/GPU:0"], "mixed_float16")])
def test_auto_precision_follows_the_device(monkeypatch, gpus, expected):
    from tf_melgan.distribute import set_precision
    real = tf.config.list_physical_devices
    monkeypatch.setattr(tf.config, "list_physical_devices",
                        lambda kind=None: gpus if kind == "GPU" else real(kind))
    try:
        assert set_precision("auto") == expected
        assert keras.mixed_precision.global_policy().name == expected
    finally:
        keras.mixed_precision.set_global_policy("float32")
