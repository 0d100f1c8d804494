"""tf-melgan: MelGAN (Kumar et al., NeurIPS 2019) in TensorFlow 2 / Keras 3.

The public names below are imported on first use (PEP 562), so `import tf_melgan` and the
TensorFlow-free LiteRT path (`tf_melgan.deploy.litert`, `.vocoder`, `.manifest`) do not pay
for, or need, TensorFlow.
"""

import importlib

# No environment is set here (TF_CPP_MIN_LOG_LEVEL, warning filters): the command-line
# tools quiet TensorFlow themselves (tf_melgan.cli.quiet_tensorflow), a library user decides.

__version__ = "0.1.0"

_EXPORTS = {
    "tf_melgan.audio": ["AudioError", "LogMel", "load_audio", "log_mel_numpy", "mel_filters"],
    "tf_melgan.config": ["Config", "ConfigError", "load_config"],
    "tf_melgan.data": ["AudioSource", "DataError", "find_audio_files", "train_dataset"],
    "tf_melgan.discriminator": ["MultiPeriodDiscriminator", "MultiScaleDiscriminator"],
    "tf_melgan.generator": ["Generator"],
    "tf_melgan.convs": ["WeightNormalization"],
    "tf_melgan.layers": ["ReflectionPad1D", "ResidualBlock", "Snake"],
    "tf_melgan.losses": ["discriminator_loss", "feature_matching_loss", "generator_loss",
                         "mel_l1"],
    "tf_melgan.model": ["MelGAN", "make_optimizer"],
    "tf_melgan.deploy.vocoder": ["Vocoder", "load_vocoder"],
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(_MODULE_OF)


def __getattr__(name):
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'tf_melgan' has no attribute '{name}'")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__():
    return sorted(set(globals()) | set(_MODULE_OF))
