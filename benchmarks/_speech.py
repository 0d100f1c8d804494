"""What the speech-quality benchmarks (quality, curve) and scripts/ship_model.py share:
speech and pause frames, levels, the Griffin-Lim reference vocoder and spectrogram PNGs."""

from __future__ import annotations

import os

import numpy as np

SPEECH_DB = 40.0


def speech_frames(mel_log10: np.ndarray) -> np.ndarray:
    """Frames whose total mel energy is within SPEECH_DB of the clip's loudest frame."""
    energy = 10.0 * np.log10(np.sum(10.0 ** (2.0 * mel_log10), axis=-1) + 1e-20)
    return energy > energy.max() - SPEECH_DB


def rms_dbfs(x) -> float:
    return float(10.0 * np.log10(np.mean(np.square(x, dtype=np.float64)) + 1e-20))


def griffin_lim(mel_log10, audio_config):
    import librosa
    from tf_melgan.audio import mel_filters
    magnitude_mel = 10.0 ** mel_log10.T.astype(np.float64)
    basis = mel_filters(audio_config).astype(np.float64)  # [n_fft/2+1, n_mels]
    spec = librosa.feature.inverse.nnls(basis.T, magnitude_mel)
    return librosa.griffinlim(spec, n_iter=32, hop_length=audio_config.hop_length,
                              win_length=audio_config.win_length, n_fft=audio_config.n_fft,
                              random_state=0)


def spectrogram_png(signals: dict, sr: int, path: str, n_fft=1024, hop=256):
    """One row per signal: its log-magnitude spectrogram (dB, 80 dB range, 0-8 kHz)."""
    import librosa
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(len(signals), 1, figsize=(10, 1.9 * len(signals)), sharex=True)
    for ax, (name, x) in zip(axes, signals.items()):
        spec = np.abs(librosa.stft(np.asarray(x, np.float32), n_fft=n_fft, hop_length=hop))
        db = librosa.amplitude_to_db(spec, ref=np.max, top_db=80.0)
        ax.imshow(db, origin="lower", aspect="auto", cmap="magma",
                  extent=[0, len(x) / sr, 0, sr / 2000])
        ax.set_ylim(0, 8)
        ax.set_ylabel("kHz")
        ax.set_title(name, fontsize=9, loc="left")
    axes[-1].set_xlabel("seconds")
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
