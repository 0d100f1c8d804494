"""The GAN: generator + multi-scale discriminator with the official one-step update order."""

from __future__ import annotations

import keras
import tensorflow as tf

from tf_melgan.audio import LogMel
from tf_melgan.config import Config
from tf_melgan.discriminator import MultiPeriodDiscriminator, MultiScaleDiscriminator
from tf_melgan.spectral_discriminator import MultiResolutionSpectrogramDiscriminator
from tf_melgan.builders import build_generator
from tf_melgan.native import choose_grouped_conv
from tf_melgan.losses import (discriminator_loss, feature_matching_loss,
                              generator_adversarial_loss, mel_l1, multi_resolution_stft_loss,
                              phase_losses)
from tf_melgan.spectral import stft as mel_stft


def make_optimizer(opt_config, mixed_float16=False):
    """Adam with the paper's settings; epsilon 1e-8 as PyTorch's default."""
    opt = keras.optimizers.Adam(learning_rate=opt_config.learning_rate,
                                beta_1=opt_config.beta_1, beta_2=opt_config.beta_2,
                                epsilon=1e-8)
    return keras.optimizers.LossScaleOptimizer(opt) if mixed_float16 else opt


class MelGAN(keras.Model):
    """Trains a Generator against a MultiScaleDiscriminator.

    One `train_step` (official order): generate once; update D with the hinge loss on real
    audio and the detached fake; score the *same* fake with the updated D for the
    generator's hinge + lambda_feat * feature-matching loss, the real features coming from
    the pass made before the D update. Data are (mel [B, frames, n_mels], audio [B, samples]).

    Opt-in additions (not in the paper, each a config key): lambda_mel * mean|log_mel(G(s))
    - s| and lambda_stft * the multi-resolution STFT loss in the generator's loss; a
    MultiPeriodDiscriminator and a MultiResolutionSpectrogramDiscriminator beside the
    multi-scale one, which num_scales 0 drops (each one's hinge and feature-matching terms
    added to each loss, updated with D's optimizer); `generator_only` (set by the
    training loop before discriminator_start_step): G trains on those reconstruction
    losses alone and D is not run.
    """

    def __init__(self, generator: keras.Model, discriminator: MultiScaleDiscriminator,
                 log_mel: LogMel, lambda_feat: float = 10.0, lambda_mel: float = 0.0,
                 period_discriminator: MultiPeriodDiscriminator | None = None,
                 lambda_stft: float = 0.0, stft_resolutions=(), grouped_conv: str = "auto",
                 lambda_phase: float = 0.0,
                 spectrogram_discriminator: MultiResolutionSpectrogramDiscriminator | None = None,
                 adversarial_weights=(1.0, 1.0, 1.0), feature_weights=(1.0, 1.0, 1.0),
                 **kwargs):
        super().__init__(**kwargs)
        self.generator, self.discriminator, self.log_mel = generator, discriminator, log_mel
        self.period_discriminator = period_discriminator
        self.spectrogram_discriminator = spectrogram_discriminator
        # (adversarial, feature-matching) weight by checkpoint name, in the config's order
        self.discriminator_weights = dict(zip(
            ("discriminator", "period_discriminator", "spectrogram_discriminator"),
            zip(map(float, adversarial_weights), map(float, feature_weights))))
        self.lambda_feat, self.lambda_mel = lambda_feat, lambda_mel
        self.lambda_stft, self.stft_resolutions = lambda_stft, [list(r) for r in stft_resolutions]
        self.lambda_phase = lambda_phase
        self.generator_only = False
        self.grouped_conv_setting = grouped_conv
        self.grouped_conv = None  # what compile() chose

    @classmethod
    def from_config_dataclass(cls, config: Config) -> "MelGAN":
        g = build_generator(config, quantize=config.training.qat)
        d = MultiScaleDiscriminator.from_config_dataclass(config.discriminator,
                                                          name="discriminator")
        d.build()
        p = None
        if config.discriminator.periods:
            p = MultiPeriodDiscriminator.from_config_dataclass(config.discriminator,
                                                               name="period_discriminator")
            p.build()
        s = None
        if config.discriminator.spectrogram_resolutions:
            s = MultiResolutionSpectrogramDiscriminator.from_config_dataclass(
                config.discriminator, name="spectrogram_discriminator")
            s.build()
        loss = config.loss
        return cls(g, d, LogMel(config.audio), lambda_feat=loss.lambda_feat,
                   lambda_mel=loss.lambda_mel, period_discriminator=p,
                   lambda_stft=loss.lambda_stft, stft_resolutions=loss.stft_resolutions,
                   grouped_conv=config.discriminator.grouped_conv,
                   lambda_phase=loss.lambda_phase, spectrogram_discriminator=s,
                   adversarial_weights=loss.adversarial_weights,
                   feature_weights=loss.feature_weights)

    @property
    def named_discriminators(self) -> dict:
        """{checkpoint name: model} of every discriminator built (a 0-scale multi-scale one
        included: it has no weights, and old checkpoints name it)."""
        named = {"discriminator": self.discriminator,
                 "period_discriminator": self.period_discriminator,
                 "spectrogram_discriminator": self.spectrogram_discriminator}
        return {name: d for name, d in named.items() if d is not None}

    @property
    def discriminators(self):
        """The discriminator models in use: multi-scale, multi-period, spectrogram."""
        return [d for d in self.named_discriminators.values() if d.discriminators]

    @property
    def weights_in_use(self):
        """(adversarial, feature-matching) weights of `discriminators`, in their order."""
        return [self.discriminator_weights[name] for name, d in self.named_discriminators.items()
                if d.discriminators]

    def d_variables(self):
        return [v for d in self.discriminators for v in d.trainable_variables]

    def compile(self, g_optimizer, d_optimizer, **kwargs):
        super().compile(**kwargs)
        # The discriminator's grouped convs, for the device and compilation of the step.
        self.grouped_conv = choose_grouped_conv(
            self.grouped_conv_setting, on_gpu=bool(tf.config.list_logical_devices("GPU")),
            compute_dtype=self.discriminator.compute_dtype, jit_compile=bool(self.jit_compile))
        self.discriminator.set_grouped_conv(self.grouped_conv)
        self.g_optimizer, self.d_optimizer = g_optimizer, d_optimizer
        # Build the slots now, not inside the first traced (maybe distributed) step.
        g_optimizer.build(self.generator.trainable_variables)
        d_optimizer.build(self.d_variables())
        names = ["d_loss", "g_loss", "g_adv", "feature_matching", "mel_l1", "stft", "phase"]
        self.trackers = {n: keras.metrics.Mean(name=n) for n in names}

    @property
    def metrics(self):
        return list(getattr(self, "trackers", {}).values())

    def call(self, mel, training=False):
        return self.generator(mel, training=training)

    def _record(self, **values):
        for name, value in values.items():
            self.trackers[name].update_state(value)
        results = {name: self.trackers[name].result() for name in values}
        if _multi_worker(tf.distribute.get_strategy()):
            # Keras 3 averages step outputs over workers with strategy.reduce("MEAN", v,
            # axis=0), which fails on scalars: give them a leading axis (reduced away).
            results = {name: value[None] for name, value in results.items()}
        return results

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # A private Keras hook, overridden (no public way to skip it; checked with Keras
        # 3.15.1). Everything is built in from_config_dataclass / compile. Keras 3's version
        # all-reduces a whole first batch, which fails under MultiWorkerMirroredStrategy
        # (nested PerReplica values) and for uneven per-replica batches; skip it, as Keras
        # itself does outside a tf.distribute scope.
        return

    def _d_outputs(self, audio):
        return [d(audio, training=True) for d in self.discriminators]

    def _reconstruction(self, fake, mel, audio):
        """lambda_mel * mel L1 + lambda_stft * MR-STFT, and the two terms for logging."""
        loss, l1, stft = 0.0, None, 0.0
        if self.lambda_mel:
            l1 = mel_l1(self.log_mel(fake), mel)
            loss += self.lambda_mel * l1
        if self.lambda_stft:
            stft = multi_resolution_stft_loss(fake, audio, self.stft_resolutions)[0]
            loss += self.lambda_stft * stft
        return loss, l1, stft

    def train_step(self, data):
        mel, audio = data
        # Gradients are summed over replicas, so each replica's loss is divided by their number.
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        g_vars, d_vars = self.generator.trainable_variables, self.d_variables()
        values = {}
        with tf.GradientTape() as g_tape:
            if self.lambda_phase:
                fake, fake_phase = self.generator(mel, training=True, return_phase=True)
            else:
                fake = self.generator(mel, training=True)
            if not self.generator_only:
                with g_tape.stop_recording():
                    with tf.GradientTape() as d_tape:
                        real_outs = self._d_outputs(audio)
                        fake_outs = self._d_outputs(tf.stop_gradient(fake))
                        d_loss = sum(w * discriminator_loss(r, f) for r, f, (w, _) in
                                     zip(real_outs, fake_outs, self.weights_in_use, strict=True))
                        scaled = self.d_optimizer.scale_loss(d_loss / replicas)
                    self.d_optimizer.apply(d_tape.gradient(scaled, d_vars), d_vars)
                fake_outs = self._d_outputs(fake)  # the updated D
                g_loss, g_adv, fm = 0.0, 0.0, 0.0
                for r, f, d, (w_adv, w_fm) in zip(real_outs, fake_outs, self.discriminators,
                                                  self.weights_in_use, strict=True):
                    adv = w_adv * generator_adversarial_loss(f)
                    feat = w_fm * feature_matching_loss(r, f, d.feature_layers)
                    g_loss += adv + self.lambda_feat * feat
                    g_adv, fm = g_adv + adv, fm + feat
                values.update(d_loss=d_loss, g_adv=g_adv, feature_matching=fm)
            else:
                g_loss = 0.0
            reconstruction, l1, stft = self._reconstruction(fake, mel, audio)
            g_loss += reconstruction
            if self.lambda_phase:
                real_phase = tf.math.angle(mel_stft(audio, self.log_mel.audio_config))
                phase = sum(phase_losses(fake_phase, real_phase))
                g_loss += self.lambda_phase * phase
                values["phase"] = phase
            scaled = self.g_optimizer.scale_loss(g_loss / replicas)
        self.g_optimizer.apply(g_tape.gradient(scaled, g_vars), g_vars)
        if l1 is None:
            l1 = mel_l1(self.log_mel(tf.stop_gradient(fake)), mel)
        values.update(g_loss=g_loss, mel_l1=l1)
        if self.lambda_stft:
            values["stft"] = stft
        return self._record(**values)

    def test_step(self, data):
        mel, _ = data
        fake = self.generator(mel, training=False)
        return self._record(mel_l1=mel_l1(self.log_mel(fake), mel))


def _multi_worker(strategy) -> bool:
    """A MultiWorkerMirroredStrategy over more than one worker (what Keras' private
    `extended._in_multi_worker_mode()` says), from its public cluster resolver."""
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return False
    spec = strategy.cluster_resolver.cluster_spec().as_dict()
    return len(spec.get("worker", [])) + len(spec.get("chief", [])) > 1

