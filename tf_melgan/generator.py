"""The MelGAN generator: log-mel [batch, frames, n_mels] -> waveform [batch, frames * hop]."""

from __future__ import annotations

import keras
from keras import ops

from tf_melgan.config import GeneratorConfig
from tf_melgan.convs import conv1d, conv1d_transpose, fold_weight_norm_into, quantizers_of
from tf_melgan.fake_quant import ActivationQuantizer, TANH_RANGE
from tf_melgan.layers import (NearestUpsampler, ReflectionPad1D, ResidualBlock, Snake,
                              activation_layer)
from tf_melgan.streaming import ReceptiveField, receptive_field


@keras.saving.register_keras_serializable(package="tf_melgan")
class Generator(keras.Model):
    """The official architecture (Kumar et al. 2019, Appendix A / `Generator(80, 32, 3)`).

    ReflectionPad(3) -> Conv(k7, 2^len(ratios) * ngf); per ratio r: LReLU ->
    ConvTranspose(kernel 2r, stride r, PyTorch padding r//2 + r%2, output_padding r%2),
    halving channels -> residual blocks with dilations 1, 3, 9, ...; LReLU ->
    ReflectionPad(3) -> Conv(k7, 1) -> tanh. activation='snake' (not in the paper) puts a
    Snake with its own per-channel a wherever the paper has a LeakyReLU; upsampling=
    'nearest' (not in the paper) replaces each transposed conv by a NearestUpsampler.
    pad_mode and polyphase pick the ops of an export graph (ReflectionPad1D's mode,
    PolyphaseConv1DTranspose), not the numbers; tf_melgan.deploy.graph sets them.
    quantize=True simulates LiteRT's int8 model of it (tf_melgan.fake_quant; nearest upsampling
    only: the transposed convs export as another graph); with float_output, the int8 model
    of `convert --quantize --float_layers output` (conv_post and tanh in float32), and with
    float_stages N too, the last N upsampling stages and act_post in float32 (float_layers()
    names them for the converter).
    """

    def __init__(self, n_mels=80, ngf=32, ratios=(8, 8, 2, 2), n_residual_layers=3,
                 init="pytorch", init_stddev=0.02, weight_norm=True, activation="leaky_relu",
                 upsampling="transposed", pad_mode="gather", polyphase=False, quantize=False,
                 float_output=False, float_stages=0, **kwargs):
        super().__init__(**kwargs)
        if quantize and upsampling != "nearest":
            raise ValueError("quantize=True (QAT) needs upsampling='nearest'")
        if float_output and not quantize:
            raise ValueError("float_output is an option of quantize=True")
        if float_stages and not float_output:
            raise ValueError("float_stages is an option of float_output=True")
        self.quantize, self.float_output, self.float_stages = quantize, float_output, float_stages
        self.n_mels, self.ngf, self.ratios = n_mels, ngf, list(ratios)
        self.n_residual_layers, self.weight_norm = n_residual_layers, weight_norm
        self.init, self.init_stddev, self.activation = init, init_stddev, activation
        self.upsampling, self.pad_mode, self.polyphase = upsampling, pad_mode, polyphase
        self.hop_length = 1
        for r in self.ratios:
            self.hop_length *= r
        opts = dict(weight_norm=weight_norm, init=init, stddev=init_stddev)
        if quantize:
            opts["quantize"] = True
            self.input_quantizer = ActivationQuantizer(name="input_q")
        if quantize and not float_output:
            self.output_quantizer = ActivationQuantizer(*TANH_RANGE, fixed=True, name="tanh_q")
        channels = ngf * 2 ** len(self.ratios)
        self.pad_pre = ReflectionPad1D(3, pad_mode, name="pad_pre")
        self.conv_pre = conv1d(channels, 7, n_mels, name="conv_pre", **opts)
        self.upsamplers, self.stages, self.acts = [], [], []
        for i, r in enumerate(self.ratios):
            self.acts.append(activation_layer(activation, channels, name=f"act_{i}",
                                              quantize=quantize))
            channels //= 2
            # The last float_stages stages run in float32 (the activation before each, on
            # the previous stage's output, stays int8, as in the converted model).
            stage_opts = {**opts, "quantize": i < len(self.ratios) - float_stages} \
                if quantize else opts
            self.upsamplers.append(
                NearestUpsampler(channels, r, 2 * channels, name=f"up_{i}", pad_mode=pad_mode,
                                 **stage_opts)
                if upsampling == "nearest" else
                conv1d_transpose(channels, 2 * r, r, name=f"up_{i}", polyphase=polyphase,
                                 **stage_opts))
            self.stages.append([ResidualBlock(channels, 3 ** j, name=f"res_{i}_{j}",
                                              activation=activation, pad_mode=pad_mode,
                                              **stage_opts)
                                for j in range(n_residual_layers)])
        self.act_post = activation_layer(activation, channels, name="act_post",
                                         quantize=quantize and not float_stages)
        self.pad_post = ReflectionPad1D(3, pad_mode, name="pad_post")
        self.conv_post = conv1d(1, 7, channels, name="conv_post",
                                **{**opts, "quantize": quantize and not float_output})
        # Keras 3 keeps layers held in lists out of tf.train.Checkpoint's object graph;
        # attributes put them in (same layers, same weights and order).
        for i, (act, up, blocks) in enumerate(zip(self.acts, self.upsamplers, self.stages)):
            setattr(self, f"act_{i}", act)
            setattr(self, f"up_{i}", up)
            for j, block in enumerate(blocks):
                setattr(self, f"res_{i}_{j}", block)

    @classmethod
    def from_config_dataclass(cls, config: GeneratorConfig, n_mels: int, **kwargs):
        return cls(n_mels=n_mels, ngf=config.ngf, ratios=config.ratios,
                   n_residual_layers=config.n_residual_layers, init=config.init,
                   init_stddev=config.init_stddev, activation=config.activation,
                   upsampling=config.upsampling, **kwargs)

    def build(self, input_shape=None):
        self.conv_pre.build((None, None, self.n_mels))
        channels = self.ngf * 2 ** len(self.ratios)
        for act, up, blocks in zip(self.acts, self.upsamplers, self.stages):
            act.build((None, None, channels))
            up.build((None, None, channels))
            channels //= 2
            for block in blocks:
                block.build((None, None, channels))
        self.act_post.build((None, None, channels))
        self.conv_post.build((None, None, channels))
        self.built = True

    def call(self, mel, training=False):
        if self.quantize:
            mel = self.input_quantizer(mel)
        x = self.conv_pre(self.pad_pre(mel))
        for r, act, up, blocks in zip(self.ratios, self.acts, self.upsamplers, self.stages):
            x = up(act(x))
            if self.upsampling == "transposed":
                # 'valid' transposed conv gives frames * r + r samples; PyTorch's padding
                # r//2 + r%2 with output_padding r%2 keeps frames * r of them from this
                # offset. Sliced from both ends, with no shape arithmetic (which would leave
                # dynamic tensors in a dynamic-length .tflite, slow under XNNPACK).
                start = r // 2 + r % 2
                x = x[:, start:start - r or None]
            for block in blocks:
                x = block(x)
        x = ops.tanh(self.conv_post(self.pad_post(self.act_post(x))))
        if self.quantize and not self.float_output:
            x = self.output_quantizer(x)
        return ops.cast(x[..., 0], "float32")

    @property
    def receptive_field(self) -> ReceptiveField:
        """Frames of mel one output frame depends on, from this model's layers."""
        return receptive_field(self)

    @property
    def min_frames(self) -> int:
        """The fewest mel frames it takes: its first reflection pad needs more than its width."""
        return self.pad_pre.padding + 1

    def describe(self) -> dict:
        """The manifest's generator block: what the architecture is."""
        return {"head": "waveform", "ngf": self.ngf, "ratios": list(self.ratios),
                "n_residual_layers": self.n_residual_layers, "upsampling": self.upsampling,
                "activation": self.activation, "hop_length": self.hop_length}

    def compute_output_shape(self, input_shape):
        frames = input_shape[1]
        return (input_shape[0], None if frames is None else frames * self.hop_length)

    def get_config(self):
        return {**super().get_config(), "n_mels": self.n_mels, "ngf": self.ngf,
                "ratios": self.ratios, "n_residual_layers": self.n_residual_layers,
                "init": self.init, "init_stddev": self.init_stddev,
                "weight_norm": self.weight_norm, "activation": self.activation,
                "upsampling": self.upsampling, "pad_mode": self.pad_mode,
                "polyphase": self.polyphase, "quantize": self.quantize,
                "float_output": self.float_output, "float_stages": self.float_stages}

    def folded(self) -> "Generator":
        """A copy without weight normalization (plain kernels w = g v / ||v||): same output,
        fewer parameters, and what inference and export use."""
        if not self.weight_norm:
            return self
        config = self.get_config()
        config.update(weight_norm=False, name=f"{self.name}_folded")
        plain = Generator.from_config(config)
        plain.build((None, None, self.n_mels))
        for source, target in zip(self.snakes(), plain.snakes()):
            target.set_weights(source.get_weights())
        targets = plain.quantizers()
        for name, q in self.quantizers().items():
            if q.lo is not None:
                targets[name].set_range(q.lo, q.hi)
        return fold_weight_norm_into(self, plain)

    def snakes(self):
        """The Snake layers (activation='snake'), in a fixed order; none otherwise."""
        acts = list(self.acts) + [a for blocks in self.stages for b in blocks
                                  for a in (b.act_1, b.act_2)] + [self.act_post]
        return [a for a in acts if isinstance(a, Snake)]

    def quantizers(self):
        """{name: ActivationQuantizer} (quantize=True), in call order: 'input', 'conv_pre/
        output', 'act_0/mul', ..., 'res_0_0/conv_dilated/output', ..., 'res_0_0/add', ...,
        'tanh' (not with float_output); {} otherwise. The names key MODEL_DIR/qat_ranges.json."""
        if not self.quantize:
            return {}
        found = {"input": self.input_quantizer}
        layers = [("conv_pre", self.conv_pre)]
        for i, (act, up, blocks) in enumerate(zip(self.acts, self.upsamplers, self.stages)):
            layers += [(f"act_{i}", act), (f"up_{i}", up)]
            layers += [(f"res_{i}_{j}", b) for j, b in enumerate(blocks)]
        layers += [("act_post", self.act_post), ("conv_post", self.conv_post)]
        for prefix, layer in layers:
            found.update({f"{prefix}/{n}": q for n, q in quantizers_of(layer).items()})
        if not self.float_output:
            found["tanh"] = self.output_quantizer
        return found

    def float_layers(self) -> tuple:
        """The parts a quantize=True generator keeps in float32, as the converter's
        --float_layers patterns (tf_melgan.deploy.convert.quantize): () for all-int8."""
        if not self.float_output:
            return ()
        stages = range(len(self.ratios) - self.float_stages, len(self.ratios))
        # pad_post too: int8 there would requantize act_post's float output before conv_post
        return (*(p for i in stages for p in (f"up_{i}", f"res_{i}_")),
                *(("act_post", "pad_post") if self.float_stages else ()), "output")
