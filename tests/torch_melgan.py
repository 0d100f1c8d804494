"""A small PyTorch MelGAN written from ../shared/docs/melgan-reference.md, for parity tests.

Same module tree, hence the same state_dict keys, as the official release:
`Generator(80, 32, 3)` is one nn.Sequential `model` (126 tensors) and the multi-scale
`Discriminator` is `model.disc_{i}.model.layer_{j}` (63 tensors at the defaults), with the
classic `torch.nn.utils.weight_norm` (keys `weight_g`, `weight_v`). Two generalisations
that leave the default layout untouched: the generator takes `ratios` (the official one
hard-codes 8, 8, 2, 2) and the discriminator takes `max_channels` (official: 1024). The
discriminator's k5 layer takes the channels the last strided layer actually outputs; the
official code passes `nf_prev` there, which is the same number only when the channel cap
is reached (true at the defaults, where the official model is the only one that runs).
"""

from __future__ import annotations

import warnings

import librosa
import torch
import torch.nn as nn
import torch.nn.functional as F

GENERATOR_TENSORS = 126  # Generator(80, 32, 3)
DISCRIMINATOR_TENSORS = 63  # Discriminator(3, 16, 4, 4)


def wn(module):
    """Classic weight norm (dim=0): keys weight_g / weight_v as in the official checkpoints."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        return nn.utils.weight_norm(module)


def WNConv1d(*args, **kwargs):
    return wn(nn.Conv1d(*args, **kwargs))


def WNConvTranspose1d(*args, **kwargs):
    return wn(nn.ConvTranspose1d(*args, **kwargs))


class ResnetBlock(nn.Module):
    def __init__(self, channels, dilation):
        super().__init__()
        self.block = nn.Sequential(
            nn.LeakyReLU(0.2),
            nn.ReflectionPad1d(dilation),
            WNConv1d(channels, channels, kernel_size=3, dilation=dilation),
            nn.LeakyReLU(0.2),
            WNConv1d(channels, channels, kernel_size=1),
        )
        self.shortcut = WNConv1d(channels, channels, kernel_size=1)

    def forward(self, x):
        return self.shortcut(x) + self.block(x)


class Generator(nn.Module):
    """mel [B, n_mels, frames] -> audio [B, 1, frames * prod(ratios)]."""

    def __init__(self, n_mels=80, ngf=32, n_residual_layers=3, ratios=(8, 8, 2, 2)):
        super().__init__()
        channels = ngf * 2 ** len(ratios)
        layers = [nn.ReflectionPad1d(3), WNConv1d(n_mels, channels, kernel_size=7)]
        for r in ratios:
            layers += [nn.LeakyReLU(0.2),
                       WNConvTranspose1d(channels, channels // 2, kernel_size=2 * r, stride=r,
                                         padding=r // 2 + r % 2, output_padding=r % 2)]
            channels //= 2
            layers += [ResnetBlock(channels, 3 ** j) for j in range(n_residual_layers)]
        layers += [nn.LeakyReLU(0.2), nn.ReflectionPad1d(3),
                   WNConv1d(channels, 1, kernel_size=7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, mel):
        return self.model(mel)


class NLayerDiscriminator(nn.Module):
    def __init__(self, ndf=16, n_layers=4, downsampling=4, max_channels=1024):
        super().__init__()
        s = downsampling
        model = nn.ModuleDict()
        model["layer_0"] = nn.Sequential(nn.ReflectionPad1d(7), WNConv1d(1, ndf, kernel_size=15),
                                         nn.LeakyReLU(0.2))
        channels = ndf
        for n in range(1, n_layers + 1):
            previous, channels = channels, min(channels * s, max_channels)
            model[f"layer_{n}"] = nn.Sequential(
                WNConv1d(previous, channels, kernel_size=10 * s + 1, stride=s, padding=5 * s,
                         groups=previous // 4),
                nn.LeakyReLU(0.2))
        previous, channels = channels, min(channels * 2, max_channels)
        model[f"layer_{n_layers + 1}"] = nn.Sequential(
            WNConv1d(previous, channels, kernel_size=5, padding=2), nn.LeakyReLU(0.2))
        model[f"layer_{n_layers + 2}"] = WNConv1d(channels, 1, kernel_size=3, padding=1)
        self.model = model

    def forward(self, x):
        features = []
        for layer in self.model.values():
            x = layer(x)
            features.append(x)
        return features


class Discriminator(nn.Module):
    """audio [B, 1, samples] -> per scale, every layer's output [B, C, T]."""

    def __init__(self, num_scales=3, ndf=16, n_layers=4, downsampling=4, max_channels=1024):
        super().__init__()
        self.model = nn.ModuleDict({
            f"disc_{i}": NLayerDiscriminator(ndf, n_layers, downsampling, max_channels)
            for i in range(num_scales)})
        self.downsample = nn.AvgPool1d(4, stride=2, padding=1, count_include_pad=False)

    def forward(self, x):
        outputs = []
        for i, disc in enumerate(self.model.values()):
            if i:
                x = self.downsample(x)
            outputs.append(disc(x))
        return outputs


class Audio2Mel(nn.Module):
    """The official features: reflect pad (n_fft - hop) / 2, STFT center=False with a
    periodic Hann window, magnitude, librosa mel filters, log10(clamp(mel, 1e-5)).
    audio [B, 1, samples] -> [B, n_mels, frames]."""

    def __init__(self, n_fft=1024, hop_length=256, win_length=1024, sampling_rate=22050,
                 n_mel_channels=80, mel_fmin=0.0, mel_fmax=None):
        super().__init__()
        self.n_fft, self.hop_length, self.win_length = n_fft, hop_length, win_length
        mel = librosa.filters.mel(sr=sampling_rate, n_fft=n_fft, n_mels=n_mel_channels,
                                  fmin=mel_fmin, fmax=mel_fmax)
        self.register_buffer("mel_basis", torch.from_numpy(mel).float())
        self.register_buffer("window", torch.hann_window(win_length).float())  # periodic

    def forward(self, audio):
        p = (self.n_fft - self.hop_length) // 2
        audio = F.pad(audio, (p, p), "reflect").squeeze(1)
        spec = torch.stft(audio, n_fft=self.n_fft, hop_length=self.hop_length,
                          win_length=self.win_length, window=self.window.to(audio.dtype),
                          center=False, return_complex=True)
        magnitude = spec.abs()
        mel = torch.matmul(self.mel_basis.to(audio.dtype), magnitude)
        return torch.log10(torch.clamp(mel, min=1e-5))


@torch.no_grad()
def randomize_(model, seed, g_spread=0.5):
    """Random weights where g != ||v|| (at init they are equal, so a mis-mapped g would go
    unnoticed): v and biases from the default init of a seeded model, g scaled per channel
    by U(1 - g_spread, 1 + g_spread), biases re-drawn so they are not all tiny."""
    gen = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        if name.endswith("weight_g"):
            p.mul_(1 + g_spread * (2 * torch.rand(p.shape, generator=gen) - 1))
        elif name.endswith("weight_v"):
            p.copy_(torch.randn(p.shape, generator=gen) * p.std())
        elif name.endswith("bias"):
            p.copy_(0.1 * torch.randn(p.shape, generator=gen))
    return model


def generator_shapes(n_mels=80, ngf=32, n_residual_layers=3, ratios=(8, 8, 2, 2)):
    """The reference's key -> shape table for the generator, written out by hand."""
    shapes = {}

    def conv(prefix, out, cin, k, transposed=False):
        shapes[f"{prefix}.bias"] = (out,)
        shapes[f"{prefix}.weight_g"] = ((cin if transposed else out), 1, 1)
        shapes[f"{prefix}.weight_v"] = (cin, out, k) if transposed else (out, cin, k)

    channels = ngf * 2 ** len(ratios)
    conv("model.1", channels, n_mels, 7)
    index = 2
    for r in ratios:
        conv(f"model.{index + 1}", channels // 2, channels, 2 * r, transposed=True)
        channels //= 2
        for j in range(n_residual_layers):
            block = f"model.{index + 2 + j}"
            conv(f"{block}.block.2", channels, channels, 3)
            conv(f"{block}.block.4", channels, channels, 1)
            conv(f"{block}.shortcut", channels, channels, 1)
        index += 2 + n_residual_layers
    conv(f"model.{index + 2}", 1, channels, 7)
    return shapes


class DiscriminatorP(nn.Module):
    """HiFi-GAN's period discriminator (Kong et al. 2020, jik876/hifi-gan models.py
    DiscriminatorP), written from the paper's description: reflect-pad the end to a multiple
    of the period, view [B, 1, T/p, p], Conv2d (5, 1) kernels with stride (3, 1) x 4, then
    (5, 1) stride 1, then (3, 1) to one channel; padding (k // 2, 0); LeakyReLU(0.1)."""

    def __init__(self, period, channels=(32, 128, 512, 1024, 1024)):
        super().__init__()
        self.period = period
        ins = (1,) + tuple(channels)
        self.convs = nn.ModuleList(
            [nn.Conv2d(i, o, (5, 1), (3 if n < 4 else 1, 1), padding=(2, 0))
             for n, (i, o) in enumerate(zip(ins[:-1], ins[1:]))])
        self.conv_post = nn.Conv2d(channels[-1], 1, (3, 1), 1, padding=(1, 0))

    def forward(self, x):  # [B, 1, T]
        b, c, t = x.shape
        if t % self.period:
            n_pad = self.period - t % self.period
            x = F.pad(x, (0, n_pad), "reflect")
            t += n_pad
        x = x.view(b, c, t // self.period, self.period)
        features = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), 0.1)
            features.append(x)
        features.append(self.conv_post(x))
        return features
