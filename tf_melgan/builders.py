"""The one place a model part is built from a config: every generator comes from
`build_generator`, whatever its head (generator.head)."""

from __future__ import annotations

from tf_melgan.audio import mel_stats
from tf_melgan.config import Config
from tf_melgan.fourier_generator import FourierGenerator
from tf_melgan.generator import Generator


def build_generator(config: Config, quantize: bool = False, name: str = "generator"):
    """The built generator of a model's whole config (training and loading share it); with
    quantize, simulating int8 the way training.qat trains it (waveform head only)."""
    g = config.generator
    if g.head == "fourier":
        if quantize:
            raise ValueError("quantize=True (QAT) has no model of the Fourier head")
        audio = dict(vars(config.audio), stats_path=None)  # stats travel embedded
        generator = FourierGenerator(audio, body=g.body, dim=g.dim, n_blocks=g.n_blocks,
                                     intermediate=g.intermediate or None, phase=g.phase,
                                     stats=mel_stats(config.audio), init=g.init,
                                     init_stddev=g.init_stddev, activation=g.activation,
                                     name=name)
    else:
        t = config.training
        generator = Generator.from_config_dataclass(
            g, config.audio.n_mels, name=name, quantize=quantize,
            float_output=quantize and t.qat_float_output,
            float_stages=t.qat_float_stages if quantize else 0)
    generator.build((None, None, config.audio.n_mels))
    return generator


def rebuild(generator, **options):
    """A generator of the same class from its get_config with `options` changed (an export
    graph's pad_mode, weight_norm=False...), built, weights not copied."""
    config = {**generator.get_config(), **options}
    copy = type(generator).from_config(config)
    copy.build((None, None, generator.n_mels))
    return copy
