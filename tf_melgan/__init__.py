"""tf-melgan: MelGAN (Kumar et al., NeurIPS 2019) in TensorFlow 2 / Keras 3."""

import os

# TensorFlow's C++ start-up chatter (CUDA probing, oneDNN notes) buries our progress
# output; errors still show. Set TF_CPP_MIN_LOG_LEVEL yourself to see everything.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tf_melgan.audio import AudioError, LogMel, load_audio, log_mel_numpy, mel_filters
from tf_melgan.config import Config, ConfigError, load_config
from tf_melgan.data import AudioSource, DataError, find_audio_files, train_dataset
from tf_melgan.discriminator import MultiScaleDiscriminator
from tf_melgan.generator import Generator
from tf_melgan.layers import ReflectionPad1D, ResidualBlock, WeightNormalization
from tf_melgan.losses import (discriminator_loss, feature_matching_loss, generator_loss,
                              mel_l1)
from tf_melgan.model import MelGAN, make_optimizer

__version__ = "0.1.0"

__all__ = [
    "AudioError", "AudioSource", "Config", "ConfigError", "DataError", "Generator", "LogMel",
    "MelGAN", "MultiScaleDiscriminator", "ReflectionPad1D", "ResidualBlock",
    "WeightNormalization", "discriminator_loss", "feature_matching_loss", "find_audio_files",
    "generator_loss", "load_audio", "load_config", "log_mel_numpy", "make_optimizer",
    "mel_filters", "mel_l1", "train_dataset",
]
