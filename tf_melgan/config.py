"""Typed configuration: dataclasses loaded from YAML, overridable, validated.

Defaults are the paper's / official code's values (see ../shared/docs/melgan-reference.md),
so `configs/base.yaml` only has to restate them.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import os
import re
import typing
from dataclasses import dataclass, field
from typing import List, Optional

import numpy as np
import yaml

from tf_melgan.errors import TfMelganError


class ConfigError(TfMelganError, ValueError):
    """A configuration file or override is invalid; the message says where and why."""


@dataclass(frozen=True)
class MelPreset:
    """A log-mel recipe of another project (see docs/CONFIG.md "Mel presets").

    padding: 'hop'    reflect-pad (n_fft - hop) / 2 on each side, STFT with center=False
                      (frames = samples // hop);
             'center' reflect-pad n_fft // 2 on each side, as librosa.stft(center=True,
                      pad_mode='reflect') (frames = samples // hop + 1 for an even n_fft).
    log: 'log10' or 'ln'. magnitude_eps: |X| = sqrt(re^2 + im^2 + eps).
    float32_window: the Hann window rounded to float32, as torch.hann_window makes it (the
    PyTorch projects); else float64, as librosa's. The STFT itself runs in float64.
    fmin, fmax, log_clamp: the defaults of the audio keys of the same names.
    """
    padding: str
    log: str
    magnitude_eps: float
    float32_window: bool
    fmin: float
    fmax: Optional[float]  # None = sample_rate / 2
    log_clamp: float
    source: str


MEL_PRESETS = {
    "melgan": MelPreset("hop", "log10", 0.0, True, 0.0, None, 1e-5,
                        "descriptinc/melgan-neurips mel2wav/modules.py Audio2Mel"),
    "hifigan": MelPreset("hop", "ln", 1e-9, True, 0.0, 8000.0, 1e-5,
                         "jik876/hifi-gan meldataset.py mel_spectrogram (config_v1.json)"),
    "tacotron2": MelPreset("center", "log10", 0.0, False, 80.0, 7600.0, 1e-10,
                           "kan-bayashi/ParallelWaveGAN parallel_wavegan/bin/preprocess.py "
                           "logmelfilterbank (ESPnet, TensorFlowTTS: the same)"),
}


@dataclass
class AudioConfig:
    sample_rate: int = 22050
    n_fft: int = 1024
    hop_length: int = 256
    win_length: int = 1024
    n_mels: int = 80
    mel_preset: str = "melgan"  # melgan | hifigan | tacotron2: see MEL_PRESETS / docs/CONFIG.md
    # fmin, fmax, log_clamp: None = the preset's value (filled in on construction, so a
    # loaded config always holds numbers). melgan: 0, sample_rate / 2, 1e-5. An explicit
    # fmax of None stays sample_rate / 2 only for presets whose default it is.
    fmin: Optional[float] = None
    fmax: Optional[float] = None
    log_clamp: Optional[float] = None
    peak: float = 0.95  # clips are peak-normalised to this on load
    # Per-band mean / std ([2, n_mels] .npy, `python -m tf_melgan.preprocess`): when set,
    # the mel is (log_mel - mean) / std. A relative path in a YAML file is relative to
    # that file's directory (a model dir's config.yaml says `mel_stats.npy`).
    stats_path: Optional[str] = None

    def __post_init__(self):
        preset = MEL_PRESETS.get(self.mel_preset)
        if preset is None:
            close = difflib.get_close_matches(str(self.mel_preset), MEL_PRESETS, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigError(f"audio.mel_preset must be one of {', '.join(MEL_PRESETS)}; "
                              f"got '{self.mel_preset}'{hint}")
        if self.fmin is None:
            self.fmin = preset.fmin
        if self.fmax is None:
            self.fmax = preset.fmax
        if self.log_clamp is None:
            self.log_clamp = preset.log_clamp

    @property
    def preset(self) -> MelPreset:
        return MEL_PRESETS[self.mel_preset]


@dataclass
class GeneratorConfig:
    ngf: int = 32
    ratios: List[int] = field(default_factory=lambda: [8, 8, 2, 2])
    n_residual_layers: int = 3
    init: str = "pytorch"  # pytorch (what the official code trains from) | normal
    init_stddev: float = 0.02  # for init: normal
    # Not in the paper: 'snake' replaces every LeakyReLU with x + sin^2(a x) / a, one
    # trainable a per channel (BigVGAN, Lee et al. 2023, after Ziyin et al. 2020): a
    # periodic inductive bias.
    activation: str = "leaky_relu"  # leaky_relu | snake
    # Not in the paper: 'nearest' upsamples by repeating samples, then a conv (kernel
    # 2r + 1), instead of a transposed conv, which adds tones at multiples of its input
    # rate (Pons et al., "Upsampling artifacts in neural audio synthesis", ICASSP 2021).
    upsampling: str = "transposed"  # transposed | nearest
    # Not in the paper: 'fourier' is a frame-rate body and a Fourier head whose inverse STFT
    # (the mel's n_fft, window and hop) makes the waveform, its magnitude a residual over
    # the mel's pseudo-inverse (tf_melgan.fourier_generator; Vocos, Siuzdak 2023; FreeV, Lv
    # et al. 2024). ratios and upsampling are then unused; ngf, n_residual_layers too.
    head: str = "waveform"  # waveform | fourier
    body: str = "convnext"  # head fourier: convnext (Vocos) | resnet (MelGAN's blocks)
    dim: int = 256  # head fourier: the body's channels
    n_blocks: int = 8  # head fourier: ConvNeXt or residual blocks
    intermediate: int = 0  # head fourier, convnext: the blocks' hidden width; 0 = 3 * dim
    phase: str = "angle"  # head fourier: angle (Vocos) | unit (APNet2's two outputs)


@dataclass
class DiscriminatorConfig:
    num_scales: int = 3
    ndf: int = 16
    n_layers: int = 4
    downsampling: int = 4
    max_channels: int = 1024  # the official code caps channels at 1024
    init: str = "pytorch"
    init_stddev: float = 0.02
    # How the grouped convs run: auto | native | einsum | builtin. auto = the native CPU op
    # when training float32 on CPU without XLA, TF's own (cuDNN's) on a GPU, frame +
    # einsum under XLA (tf_melgan.native.choose_grouped_conv). Same numbers every way.
    grouped_conv: str = "auto"
    # Not in the paper (empty = off): HiFi-GAN's multi-period discriminator (Kong et al.
    # 2020), one sub-discriminator per period p looking at the waveform folded into p
    # columns, e.g. [2, 3, 5, 7, 11]. Its channels are period_channels * (1, 4, 16, 32, 32)
    # (HiFi-GAN: 32 * (1, 4, 16, 32, 32)), capped at max_channels; hinge loss and feature
    # matching like the multi-scale one.
    periods: List[int] = field(default_factory=list)
    period_channels: int = 32
    # Not in the paper (empty = off): UnivNet's multi-resolution spectrogram discriminator
    # (Jang et al. 2021, arXiv 2106.07889), one 2-D conv stack over |STFT| per
    # [n_fft, hop, win], e.g. UnivNet's [[1024, 120, 600], [2048, 240, 1200], [512, 50, 240]],
    # spectrogram_channels wide (UnivNet: 32); hinge loss and feature matching like the
    # others. num_scales: 0 drops the multi-scale one when another is on.
    spectrogram_resolutions: List[List[int]] = field(default_factory=list)
    spectrogram_channels: int = 32


@dataclass
class LossConfig:
    lambda_feat: float = 10.0
    # Not in the paper (0 = off): weight of an L1 loss between the log-mels of the generated
    # and the real audio, as HiFi-GAN adds. The spectral envelope converges in far fewer
    # steps; configs/demo.yaml uses it.
    lambda_mel: float = 0.0
    # Not in the paper (0 = off): weight of the multi-resolution STFT loss (spectral
    # convergence + log-magnitude L1, averaged over resolutions) of Parallel WaveGAN
    # (Yamamoto et al. 2020) and Multi-band MelGAN (Yang et al. 2021). Resolutions are
    # [n_fft, hop, win]; theirs: [1024, 120, 600], [2048, 240, 1200], [512, 50, 240].
    lambda_stft: float = 0.0
    stft_resolutions: List[List[int]] = field(
        default_factory=lambda: [[1024, 120, 600], [2048, 240, 1200], [512, 50, 240]])
    # Not in the paper (0 = off; generator.head: fourier only): weight of APNet's
    # anti-wrapped phase losses (Ai & Ling 2023), instantaneous phase + group delay +
    # instantaneous angular frequency, between the head's phase and the real audio's at
    # the mel's STFT (APNet: 100).
    lambda_phase: float = 0.0
    # Not in the paper (all 1 = the paper's plain sum): per discriminator, in the order
    # [multi-scale, multi-period, spectrogram], a weight on its hinge terms (in D's loss
    # and in G's adversarial loss) and one on its feature-matching term (times
    # lambda_feat), as Vocos weighs its multi-resolution discriminator by 0.1 (Siuzdak 2023).
    adversarial_weights: List[float] = field(default_factory=lambda: [1.0, 1.0, 1.0])
    feature_weights: List[float] = field(default_factory=lambda: [1.0, 1.0, 1.0])


@dataclass
class OptimizerConfig:
    learning_rate: float = 1e-4
    beta_1: float = 0.5
    beta_2: float = 0.9


@dataclass
class TrainingConfig:
    batch_size: int = 16  # global batch, split over replicas
    segment_length: int = 8192
    steps: int = 500_000
    steps_per_epoch: int = 1000  # validation, best-model selection and logging period
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3
    sample_every: int = 5000  # TensorBoard audio and mel images
    seed: int = 1234
    mixed_precision: str = "none"  # none | auto | mixed_float16 | mixed_bfloat16
    jit_compile: bool = False
    # Not in the paper (0 = from the start): steps during which only the generator trains,
    # on its reconstruction losses (lambda_mel, lambda_stft), before the discriminators
    # start: Parallel WaveGAN's discriminator_train_start_steps, Multi-band MelGAN's
    # generator pre-training.
    discriminator_start_step: int = 0
    # Not in the paper: quantization-aware training (Jacob et al. 2018, "Quantization and
    # Training of Neural Networks for Efficient Integer-Arithmetic-Only Inference"): the
    # generator trains through LiteRT's int8 arithmetic simulated (tf_melgan.qat), activation
    # ranges calibrated at the start and frozen (MODEL_DIR/qat_ranges.json, which
    # tf_melgan.convert --quantize then uses). For fine-tuning, e.g. --init_from ljspeech.
    qat: bool = False
    # With qat: the output layer (conv_post, tanh) stays float32, in training and in the
    # int8 model (convert --quantize then adds --float_layers output): an int8 tanh output
    # has fixed 1/128 steps, a rounding noise no training removes.
    qat_float_output: bool = False
    # With qat_float_output: the last N upsampling stages (upsampler, residual blocks) and
    # act_post stay float32 too, in training and in the int8 model (convert --quantize adds
    # --float_layers up_I,res_I_,act_post,pad_post): the quiet bins hold the rounding noise
    # of the last int8 stages, not of earlier ones (docs/BENCHMARKS.md), for some speed.
    qat_float_stages: int = 0


@dataclass
class DataConfig:
    path: typing.Union[str, List[str]] = ""  # a folder, a file, or a list of them
    validation_clips: int = 8
    # What validation_clips counts and holds out: 'clip' (the clips whose names hash
    # lowest) or 'speaker' (the speakers whose IDs hash lowest, with all their clips; the
    # ID is a file name up to its first '-' or '_': LibriSpeech's, VCTK's), so that every
    # held-out figure is on voices training never heard.
    holdout: str = "clip"
    eval_segment_length: int = 65536  # held-out clips are cropped/padded to this
    gain_min: float = 0.3
    gain_max: float = 1.0
    cache_max_gb: float = 4.0  # decoded audio is kept in memory when it fits under this
    num_parallel_calls: int = -1  # -1 = tf.data.AUTOTUNE


@dataclass
class Config:
    audio: AudioConfig = field(default_factory=AudioConfig)
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    g_optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    d_optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    data: DataConfig = field(default_factory=DataConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


MIXED_PRECISION_CHOICES = ("none", "auto", "mixed_float16", "mixed_bfloat16")


_FLOAT_RE = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def _coerce(value, hint, where: str):
    """Checks `value` against a dataclass field type, converting ints to floats."""
    origin = typing.get_origin(hint)
    if origin is typing.Union:  # Optional[X], or str | List[str]
        if value is None and type(None) in typing.get_args(hint):
            return None
        inner = [a for a in typing.get_args(hint) if a is not type(None)]
        for candidate in inner[:-1]:
            try:
                return _coerce(value, candidate, where)
            except ConfigError:
                pass
        return _coerce(value, inner[-1], where)
    if origin in (list, List):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (inner,) = typing.get_args(hint)
        return [_coerce(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, str) and _FLOAT_RE.fullmatch(value.strip()):
            value = float(value)  # PyYAML (YAML 1.1) reads 1e-4, without a dot, as a string
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    raise TypeError(f"unsupported config type {hint}")


def _from_dict(cls, data, where: str):
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigError(f"unknown config key '{path}'{hint}; known: {', '.join(names)}")
        if dataclasses.is_dataclass(hints[key]):
            kwargs[key] = _from_dict(hints[key], value or {}, path)
        else:
            kwargs[key] = _coerce(value, hints[key], path)
    return cls(**kwargs)


def _set_dotted(data: dict, dotted: str, value) -> None:
    keys = dotted.split(".")
    node = data
    for k in keys[:-1]:
        node = node.setdefault(k, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override '{dotted}': '{k}' is not a section")
    node[keys[-1]] = value


def parse_override(text: str):
    """Splits 'section.key=value' and parses the value as YAML (so 8 is an int, [8,8,4] a list)."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' must look like section.key=value")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as e:
        raise ConfigError(f"override '{text}': cannot parse value: {yaml_problem(e)}") from None
    return key.strip(), value


def config_from_dict(data: dict, overrides=()) -> Config:
    """Builds and validates a Config from a plain dict plus 'a.b=value' overrides."""
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"config: expected a mapping of sections, got {data!r}")
    data = copy.deepcopy(data or {})  # overrides must not change the caller's dict
    for text in overrides:
        key, value = parse_override(text)
        _set_dotted(data, key, value)
    config = _from_dict(Config, data, "")
    validate(config)
    return config


def _at(mark) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""


def yaml_problem(e: yaml.YAMLError) -> str:
    """PyYAML's multi-line error as one line: the problem and where, then the context."""
    problem = getattr(e, "problem", None)
    if not problem:
        return " ".join(str(e).split())
    text = f"{problem} at {_at(e.problem_mark)}" if e.problem_mark else problem
    if getattr(e, "context", None):
        context = f"{e.context} started at {_at(e.context_mark)}" if e.context_mark else e.context
        text += f" ({context})"
    return text


def load_config(path: Optional[str] = None, overrides=()) -> Config:
    """Loads a YAML config (or the defaults when `path` is None) and applies overrides.

    A relative audio.stats_path in the file is taken relative to the file's directory (so a
    model dir's config.yaml finds its mel_stats.npy wherever the dir is); one given as an
    override is relative to the working directory, like data.path.
    """
    data = {}
    if path:
        try:
            with open(path) as f:
                data = yaml.safe_load(f) or {}
        except OSError as e:
            raise ConfigError(f"cannot read config {path}: {e.strerror}") from None
        except yaml.YAMLError as e:
            raise ConfigError(f"{path} is not valid YAML: {yaml_problem(e)}") from None
        audio = data.get("audio") if isinstance(data, dict) else None
        stats = audio.get("stats_path") if isinstance(audio, dict) else None
        if isinstance(stats, str) and stats and not os.path.isabs(stats):
            audio["stats_path"] = os.path.normpath(
                os.path.join(os.path.dirname(path), os.path.expanduser(stats)))
    try:
        return config_from_dict(data, overrides)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}" if path else str(e)) from None


def read_mel_stats(path: str, n_mels: int) -> np.ndarray:
    """The [2, n_mels] float64 (mean, std) of a stats file, checked; raises ConfigError."""
    fix = ("compute it with `python -m tf_melgan.preprocess --config CONFIG --data DATA "
           f"--output {path}`")
    if not os.path.isfile(path):
        raise ConfigError(f"audio.stats_path {path}: no such file; {fix}")
    try:
        stats = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise ConfigError(f"audio.stats_path {path}: not a readable .npy file ({e})") from None
    if not isinstance(stats, np.ndarray) or stats.shape != (2, n_mels):
        shape = getattr(stats, "shape", None)
        raise ConfigError(f"audio.stats_path {path}: expected (mean, std) of shape "
                          f"(2, {n_mels}) for audio.n_mels {n_mels}, got shape {shape}")
    stats = stats.astype(np.float64)
    if not np.all(np.isfinite(stats)) or np.any(stats[1] <= 0):
        raise ConfigError(f"audio.stats_path {path}: the means must be finite and the "
                          "standard deviations finite and positive")
    return stats


def _positive(value, where):
    if value <= 0:
        raise ConfigError(f"{where} must be positive, got {value}")


def _validate_fourier(config: Config) -> None:
    a, g = config.audio, config.generator
    if g.body not in ("convnext", "resnet"):
        raise ConfigError(f"generator.body must be 'convnext' or 'resnet', got '{g.body}'")
    if g.phase not in ("angle", "unit"):
        raise ConfigError(f"generator.phase must be 'angle' or 'unit', got '{g.phase}'")
    for name in ("dim", "n_blocks"):
        _positive(getattr(g, name), f"generator.{name}")
    if g.intermediate < 0:
        raise ConfigError(f"generator.intermediate must be >= 0, got {g.intermediate}")
    if 2 * a.hop_length > a.win_length:
        # The inverse STFT divides by the overlap-added squared window: with hop > win / 2
        # it has zeros between frames.
        raise ConfigError(f"generator.head: fourier needs audio.hop_length <= win_length / 2 "
                          f"(its inverse STFT overlap-adds windows); got hop {a.hop_length}, "
                          f"win_length {a.win_length}")
    if config.training.qat:
        raise ConfigError("training.qat is not available for generator.head: fourier "
                          "(convert --quantize keeps the inverse STFT in float32)")


def validate(config: Config) -> None:
    """Raises ConfigError with a clear message for inconsistent settings."""
    a, g, d, t, data = (config.audio, config.generator, config.discriminator,
                        config.training, config.data)
    for section, names in (
        ("audio", ["sample_rate", "n_fft", "hop_length", "win_length", "n_mels", "log_clamp",
                   "peak"]),
        ("generator", ["ngf", "n_residual_layers", "init_stddev"]),
        ("discriminator", ["ndf", "n_layers", "downsampling", "max_channels",
                           "init_stddev", "spectrogram_channels"]),
        ("training", ["batch_size", "segment_length", "steps", "steps_per_epoch",
                      "checkpoint_every", "keep_checkpoints", "sample_every"]),
        ("data", ["eval_segment_length", "gain_min", "gain_max", "cache_max_gb"]),
    ):
        for name in names:
            _positive(getattr(getattr(config, section), name), f"{section}.{name}")
    for name in ("g_optimizer", "d_optimizer"):
        _positive(getattr(config, name).learning_rate, f"{name}.learning_rate")
    if a.win_length > a.n_fft:
        raise ConfigError(f"audio.win_length ({a.win_length}) must be <= audio.n_fft ({a.n_fft})")
    if a.hop_length > a.n_fft:
        raise ConfigError(f"audio.hop_length ({a.hop_length}) must be <= audio.n_fft ({a.n_fft})")
    if a.preset.padding == "hop" and (a.n_fft - a.hop_length) % 2:
        raise ConfigError("audio.n_fft - audio.hop_length must be even (the mel pads "
                          f"(n_fft - hop) / 2 samples on each side; mel_preset {a.mel_preset})")
    fmax = a.fmax if a.fmax is not None else a.sample_rate / 2
    if not 0 <= a.fmin < fmax <= a.sample_rate / 2:
        preset = "" if a.mel_preset == "melgan" else (
            f" (mel_preset {a.mel_preset} defaults to fmin={a.preset.fmin}, "
            f"fmax={a.preset.fmax}; set audio.fmin / audio.fmax for this sample rate)")
        raise ConfigError(f"need 0 <= audio.fmin < audio.fmax <= sample_rate / 2, got "
                          f"fmin={a.fmin}, fmax={fmax}, sample_rate={a.sample_rate}{preset}")
    if a.stats_path is not None:
        if not a.stats_path:
            raise ConfigError("audio.stats_path must be a file path or null, got ''")
        read_mel_stats(a.stats_path, a.n_mels)
    if g.head not in ("waveform", "fourier"):
        raise ConfigError(f"generator.head must be 'waveform' or 'fourier', got '{g.head}'")
    if g.head == "fourier":
        _validate_fourier(config)
    elif not g.ratios or any(r <= 0 for r in g.ratios):
        raise ConfigError(f"generator.ratios must be positive integers, got {g.ratios}")
    elif math.prod(g.ratios) != a.hop_length:
        raise ConfigError(f"the product of generator.ratios {g.ratios} is "
                          f"{math.prod(g.ratios)}, but audio.hop_length is {a.hop_length}; "
                          "they must be equal")
    if t.segment_length % a.hop_length:
        raise ConfigError(f"training.segment_length ({t.segment_length}) must be a multiple "
                          f"of audio.hop_length ({a.hop_length})")
    if data.eval_segment_length % a.hop_length:
        raise ConfigError(f"data.eval_segment_length ({data.eval_segment_length}) must be a "
                          f"multiple of audio.hop_length ({a.hop_length})")
    if d.ndf % 4 or d.max_channels % 4:
        raise ConfigError("discriminator.ndf and max_channels must be multiples of 4 "
                          "(its strided convs use groups = channels / 4)")
    if not 0 < data.gain_min <= data.gain_max:
        raise ConfigError(f"need 0 < data.gain_min <= data.gain_max, got "
                          f"{data.gain_min}, {data.gain_max}")
    if data.holdout not in ("clip", "speaker"):
        raise ConfigError(f"data.holdout must be 'clip' or 'speaker', got '{data.holdout}'")
    if data.validation_clips < 1:  # training needs held-out clips (validation, best model)
        raise ConfigError(f"data.validation_clips must be >= 1, got {data.validation_clips}")
    if t.mixed_precision not in MIXED_PRECISION_CHOICES:
        raise ConfigError(f"training.mixed_precision must be one of {MIXED_PRECISION_CHOICES}, "
                          f"got '{t.mixed_precision}'")
    for name, section in (("generator", g), ("discriminator", d)):
        if section.init not in ("pytorch", "normal"):
            raise ConfigError(f"{name}.init must be 'pytorch' or 'normal', got '{section.init}'")
    if config.loss.lambda_feat < 0:
        raise ConfigError("loss.lambda_feat must be >= 0")
    if config.loss.lambda_phase and g.head != "fourier":
        raise ConfigError("loss.lambda_phase needs generator.head: fourier (the phase it "
                          "compares is the head's)")
    for name in ("lambda_mel", "lambda_stft", "lambda_phase"):
        if getattr(config.loss, name) < 0:
            raise ConfigError(f"loss.{name} must be >= 0")
    for name in ("adversarial_weights", "feature_weights"):
        weights = getattr(config.loss, name)
        if len(weights) != 3 or min(weights) < 0:
            raise ConfigError(f"loss.{name} must be 3 weights >= 0 ([multi-scale, "
                              f"multi-period, spectrogram]), got {weights}")
    for i, res in enumerate(config.loss.stft_resolutions):
        if len(res) != 3 or min(res) <= 0 or res[2] > res[0]:
            raise ConfigError(f"loss.stft_resolutions[{i}] must be [n_fft, hop, win] with "
                              f"positive values and win <= n_fft, got {res}")
    if config.loss.lambda_stft and not config.loss.stft_resolutions:
        raise ConfigError("loss.lambda_stft > 0 needs at least one loss.stft_resolutions entry")
    if any(p < 1 for p in d.periods) or len(set(d.periods)) != len(d.periods):
        raise ConfigError(f"discriminator.periods must be distinct positive integers, "
                          f"got {d.periods}")
    _positive(d.period_channels, "discriminator.period_channels")
    for i, res in enumerate(d.spectrogram_resolutions):
        if len(res) != 3 or min(res) <= 0 or res[2] > res[0] or res[1] > res[0]:
            raise ConfigError(f"discriminator.spectrogram_resolutions[{i}] must be [n_fft, "
                              f"hop, win] with positive values, hop and win <= n_fft, got {res}")
    if d.num_scales < 0 or (d.num_scales == 0 and not (d.periods or d.spectrogram_resolutions)):
        raise ConfigError(f"discriminator.num_scales must be positive (0 only beside periods "
                          f"or spectrogram_resolutions), got {d.num_scales}")
    if d.grouped_conv not in ("auto", "native", "einsum", "builtin"):
        raise ConfigError(f"discriminator.grouped_conv must be one of auto, native, einsum, "
                          f"builtin; got '{d.grouped_conv}'")
    if g.activation not in ("leaky_relu", "snake"):
        raise ConfigError(f"generator.activation must be 'leaky_relu' or 'snake', "
                          f"got '{g.activation}'")
    if g.upsampling not in ("transposed", "nearest"):
        raise ConfigError(f"generator.upsampling must be 'transposed' or 'nearest', "
                          f"got '{g.upsampling}'")
    if t.qat_float_output and not t.qat:
        raise ConfigError("training.qat_float_output is an option of training.qat: true")
    if t.qat_float_stages and not t.qat_float_output:
        raise ConfigError("training.qat_float_stages is an option of training.qat_float_output:"
                          " true")
    if not 0 <= t.qat_float_stages <= len(g.ratios):
        raise ConfigError(f"training.qat_float_stages must be in 0..{len(g.ratios)} (the "
                          f"upsampling stages), got {t.qat_float_stages}")
    if t.qat and config.generator.upsampling != "nearest":
        raise ConfigError("training.qat needs generator.upsampling: nearest (the transposed "
                          "convs export as another graph, which tf_melgan.qat does not model)")
    if t.discriminator_start_step < 0:
        raise ConfigError("training.discriminator_start_step must be >= 0")
    if t.discriminator_start_step and not (config.loss.lambda_mel or config.loss.lambda_stft):
        raise ConfigError("training.discriminator_start_step > 0 trains the generator alone "
                          "first, which needs a reconstruction loss: set loss.lambda_mel "
                          "and/or loss.lambda_stft")
