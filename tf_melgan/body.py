"""Frame-rate bodies for the Fourier head: log-mel [batch, frames, n_mels] -> features
[batch, frames, dim], no upsampling.

- 'convnext' (Vocos, Siuzdak 2023, after Liu et al. 2022): Conv(k7) + LayerNorm, then
  blocks of depthwise Conv(k7) -> LayerNorm -> Dense(intermediate) -> GELU -> Dense(dim),
  scaled by a learned per-channel gamma (init 1 / n_blocks), added to the input; a final
  LayerNorm. Zero 'same' padding, no weight norm (Vocos has none).
- 'resnet': MelGAN's own stack at the frame rate: ReflectionPad(3) + Conv(k7), then
  n_blocks residual blocks (tf_melgan.layers.ResidualBlock, weight norm, dilations cycling
  1, 3, 9), then the activation.

`reach` is each body's receptive field in frames on either side, from its layers.
"""

from __future__ import annotations

import keras
from keras import ops

from tf_melgan.convs import conv1d
from tf_melgan.layers import ReflectionPad1D, ResidualBlock, activation_layer


@keras.saving.register_keras_serializable(package="tf_melgan")
class ConvNeXtBlock(keras.layers.Layer):
    def __init__(self, dim, intermediate, layer_scale, kernel_size=7, **kwargs):
        super().__init__(**kwargs)
        self.dim, self.intermediate, self.layer_scale = dim, intermediate, layer_scale
        self.kernel_size = kernel_size
        self.dwconv = keras.layers.DepthwiseConv1D(kernel_size, padding="same", name="dwconv")
        self.norm = keras.layers.LayerNormalization(epsilon=1e-6, name="norm")
        self.pwconv1 = keras.layers.Dense(intermediate, name="pwconv1")
        self.pwconv2 = keras.layers.Dense(dim, name="pwconv2")

    @property
    def reach(self) -> int:
        return (self.kernel_size - 1) // 2

    def build(self, input_shape):
        self.dwconv.build((None, None, self.dim))
        self.norm.build((None, None, self.dim))
        self.pwconv1.build((None, None, self.dim))
        self.pwconv2.build((None, None, self.intermediate))
        self.gamma = self.add_weight(name="gamma", shape=(self.dim,),
                                     initializer=keras.initializers.Constant(self.layer_scale))
        self.built = True

    def call(self, x):
        y = self.pwconv2(ops.gelu(self.pwconv1(self.norm(self.dwconv(x))), approximate=False))
        return x + self.gamma * y

    def get_config(self):
        return {**super().get_config(), "dim": self.dim, "intermediate": self.intermediate,
                "layer_scale": self.layer_scale, "kernel_size": self.kernel_size}


@keras.saving.register_keras_serializable(package="tf_melgan")
class ConvNeXtBody(keras.layers.Layer):
    def __init__(self, n_mels, dim=256, n_blocks=8, intermediate=None, **kwargs):
        super().__init__(**kwargs)
        self.n_mels, self.dim, self.n_blocks = n_mels, dim, n_blocks
        self.intermediate = intermediate or 3 * dim
        self.embed = keras.layers.Conv1D(dim, 7, padding="same", name="embed")
        self.embed_norm = keras.layers.LayerNormalization(epsilon=1e-6, name="embed_norm")
        self.blocks = [ConvNeXtBlock(dim, self.intermediate, 1.0 / n_blocks, name=f"block_{i}")
                       for i in range(n_blocks)]
        for i, block in enumerate(self.blocks):  # into tf.train.Checkpoint's graph (see
            setattr(self, f"block_{i}", block)   # generator.py)
        self.final_norm = keras.layers.LayerNormalization(epsilon=1e-6, name="final_norm")

    min_frames = 1  # zero padding takes any length

    @property
    def reach(self) -> int:
        return (self.embed.kernel_size[0] - 1) // 2 + sum(b.reach for b in self.blocks)

    def build(self, input_shape):
        self.embed.build((None, None, self.n_mels))
        for layer in [self.embed_norm, *self.blocks, self.final_norm]:
            layer.build((None, None, self.dim))
        self.built = True

    def call(self, mel):
        x = self.embed_norm(self.embed(mel))
        for block in self.blocks:
            x = block(x)
        return self.final_norm(x)

    def get_config(self):
        return {**super().get_config(), "n_mels": self.n_mels, "dim": self.dim,
                "n_blocks": self.n_blocks, "intermediate": self.intermediate}


@keras.saving.register_keras_serializable(package="tf_melgan")
class ResNetBody(keras.layers.Layer):
    def __init__(self, n_mels, dim=256, n_blocks=9, weight_norm=True, init="pytorch",
                 stddev=0.02, activation="leaky_relu", pad_mode="gather", **kwargs):
        super().__init__(**kwargs)
        self.n_mels, self.dim, self.n_blocks = n_mels, dim, n_blocks
        self.weight_norm, self.init, self.stddev = weight_norm, init, stddev
        self.activation, self.pad_mode = activation, pad_mode
        opts = dict(weight_norm=weight_norm, init=init, stddev=stddev)
        self.pad_pre = ReflectionPad1D(3, pad_mode, name="pad_pre")
        self.conv_pre = conv1d(dim, 7, n_mels, name="conv_pre", **opts)
        self.blocks = [ResidualBlock(dim, 3 ** (i % 3), activation=activation,
                                     pad_mode=pad_mode, name=f"res_{i}", **opts)
                       for i in range(n_blocks)]
        for i, block in enumerate(self.blocks):
            setattr(self, f"res_{i}", block)
        self.act_post = activation_layer(activation, dim, name="act_post")

    @property
    def reach(self) -> int:
        return 3 + sum(b.dilation for b in self.blocks)

    @property
    def min_frames(self) -> int:
        """A reflection pad needs more frames than its width: the widest one, plus one."""
        return max([self.pad_pre.padding] + [b.pad.padding for b in self.blocks]) + 1

    def build(self, input_shape):
        self.conv_pre.build((None, None, self.n_mels))
        for layer in [*self.blocks, self.act_post]:
            layer.build((None, None, self.dim))
        self.built = True

    def call(self, mel):
        x = self.conv_pre(self.pad_pre(mel))
        for block in self.blocks:
            x = block(x)
        return self.act_post(x)

    def activations(self):
        """The activation layers in a fixed order (Snake weights travel by it)."""
        return [a for b in self.blocks for a in (b.act_1, b.act_2)] + [self.act_post]

    def get_config(self):
        return {**super().get_config(), "n_mels": self.n_mels, "dim": self.dim,
                "n_blocks": self.n_blocks, "weight_norm": self.weight_norm, "init": self.init,
                "stddev": self.stddev, "activation": self.activation, "pad_mode": self.pad_mode}
