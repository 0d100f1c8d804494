"""Speech-quality figures on signals whose answers are known."""

import numpy as np
import pytest

from tf_melgan import metrics

SR, HOP = 22050, 256


def tone(f0, seconds=1.5, harmonics=6):
    t = np.arange(int(seconds * SR)) / SR
    return sum(0.3 / k * np.sin(2 * np.pi * k * f0 * t) for k in range(1, harmonics + 1))


def test_pitch_scores_voicing_and_cents():
    ref = tone(220.0)
    same = metrics.pitch_scores(metrics.pitch(ref, SR, HOP), ref, SR, HOP)
    assert same["voicing"] == 1.0 and same["f0_error_cents"] < 5
    up = metrics.pitch_scores(metrics.pitch(ref, SR, HOP), tone(220.0 * 2 ** (2 / 12)), SR, HOP)
    assert abs(up["f0_error_cents"] - 200) < 15  # two semitones
    noise = np.random.default_rng(0).normal(0, 0.1, ref.size)
    unvoiced = metrics.pitch_scores(metrics.pitch(ref, SR, HOP), noise, SR, HOP)
    assert unvoiced["voicing"] < 0.2


def test_frame_comb_separates_frame_periodic_output_from_speech_like_pitch():
    n = 2 * SR
    pulses = np.zeros(n)
    pulses[::HOP] = 1.0  # the same shape every frame: lines at k * sr / hop
    rng = np.random.default_rng(0)
    combed = np.convolve(pulses, rng.normal(size=64), "same") + 0.01 * rng.normal(size=n)
    assert metrics.frame_comb_db(combed, SR, HOP) > 20
    # a 230 Hz voice: harmonics fall between the frame-rate lines
    assert metrics.frame_comb_db(tone(230.0, 2.0) + 0.01 * rng.normal(size=n), SR, HOP) < 6


def test_pesq_and_stoi_order_clean_and_degraded():
    pytest.importorskip("pesq")
    pytest.importorskip("pystoi")
    rng = np.random.default_rng(0)
    # a speech-like signal: a gliding harmonic tone gated at a syllable rate
    t = np.arange(3 * SR) / SR
    f0 = 180 + 40 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / SR
    ref = sum(0.2 / k * np.sin(k * phase) for k in range(1, 10)) * (np.sin(2 * np.pi * 3 * t) > -0.3)
    noisy = ref + 0.05 * rng.normal(size=ref.size)
    assert metrics.pesq_wb(ref, ref, SR) > 4.4
    assert metrics.pesq_wb(ref, noisy, SR) < metrics.pesq_wb(ref, ref, SR) - 1.0
    assert metrics.stoi(ref, ref, SR) > 0.99
    assert metrics.stoi(ref, noisy, SR) < 0.95
