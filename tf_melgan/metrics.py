"""Speech-quality figures of a vocoder's output against the recording it came from.

What the field reports for copy synthesis (wav -> log-mel -> vocoder -> wav):
- `pitch_scores`: pyin voicing agreement and the median F0 error in cents on frames voiced
  in both (fmin 65, fmax 600 Hz, frame 1024, the model's hop);
- `pesq_wb`: wide-band PESQ (ITU-T P.862.2, the `pesq` package) at 16 kHz;
- `stoi`: short-time objective intelligibility (the `pystoi` package) at 16 kHz;
- `frame_comb_db`: how much the output's long-term spectrum peaks at multiples of the
  frame rate sr / hop (a frame-periodic output, the failure mode of an undertrained
  MelGAN: ../docs/BENCHMARKS.md, Quality); ~0-3 dB for a recording;
- `log_mel_l1` (tf_melgan.audio's recipe), the official model-selection criterion;
- `dnsmos`: Microsoft's non-intrusive MOS predictor (DNSMOS, Reddy et al. 2022), P.835
  SIG, BAK, OVRL and P.808, no reference needed.

`pesq`, `pystoi`, `speechmos` and `onnxruntime` are optional dependencies
(`pip install tf-melgan[eval]`).
"""

from __future__ import annotations

import numpy as np

PYIN_FMIN, PYIN_FMAX, PYIN_FRAME = 65.0, 600.0, 1024


def pitch(audio, sr, hop):
    """pyin F0 (Hz, NaN where unvoiced) and voicing flags of `audio`."""
    import librosa
    f0, voiced, _ = librosa.pyin(np.asarray(audio, np.float64), fmin=PYIN_FMIN,
                                 fmax=PYIN_FMAX, sr=sr, frame_length=PYIN_FRAME,
                                 hop_length=hop)
    return f0, voiced


def pitch_scores(ref_pitch, out, sr, hop):
    """Voicing agreement (fraction of frames) and median F0 error (cents, on frames voiced in
    both; None when there are none) of `out` against `ref_pitch` = pitch(reference)."""
    f0_r, v_r = ref_pitch
    f0_o, v_o = pitch(out, sr, hop)
    n = min(len(v_r), len(v_o))
    f0_r, v_r, f0_o, v_o = f0_r[:n], v_r[:n], f0_o[:n], v_o[:n]
    both = v_r & v_o & np.isfinite(f0_r) & np.isfinite(f0_o)
    cents = 1200.0 * np.abs(np.log2(f0_o[both] / f0_r[both]))
    return {"voicing": float(np.mean(v_r == v_o)),
            "f0_error_cents": float(np.median(cents)) if cents.size else None}


def _at_16k(audio, sr):
    import librosa
    audio = np.asarray(audio, np.float64)
    return audio if sr == 16000 else librosa.resample(audio, orig_sr=sr, target_sr=16000)


def _same_length(ref, out):
    n = min(len(ref), len(out))
    return ref[:n], out[:n]


def pesq_wb(ref, out, sr):
    """Wide-band PESQ (MOS-LQO, 1.0-4.64) of `out` against `ref`, both resampled to 16 kHz."""
    from pesq import pesq
    ref, out = _same_length(_at_16k(ref, sr), _at_16k(out, sr))
    return float(pesq(16000, ref, out, "wb"))


def stoi(ref, out, sr):
    """STOI (0-1) of `out` against `ref`, both resampled to 16 kHz."""
    from pystoi import stoi as _stoi
    ref, out = _same_length(_at_16k(ref, sr), _at_16k(out, sr))
    return float(_stoi(ref, out, 16000, extended=False))


def dnsmos(audio, sr) -> dict:
    """DNSMOS of one clip at 16 kHz: {dnsmos_ovrl, dnsmos_sig, dnsmos_bak, dnsmos_p808},
    from the ONNX models the `speechmos` package ships, run by onnxruntime (nothing is
    downloaded). speechmos scores 9.01 s windows a second apart and loops a shorter clip
    to that length."""
    from speechmos import dnsmos as _dnsmos
    audio = np.clip(_at_16k(audio, sr), -1.0, 1.0).astype(np.float32)
    r = _dnsmos.run(audio, 16000)
    return {"dnsmos_ovrl": float(r["ovrl_mos"]), "dnsmos_sig": float(r["sig_mos"]),
            "dnsmos_bak": float(r["bak_mos"]), "dnsmos_p808": float(r["p808_mos"])}


def frame_comb_db(audio, sr, hop, fmax=4000.0, n_fft=16384):
    """Mean over k of the long-term power at k * sr / hop (k >= 1, up to fmax) over the
    median power of the surrounding half-period band, in dB. A frame-periodic signal has
    lines there (tens of dB); speech, whose harmonics do not follow the frame rate, ~0-3 dB.
    """
    import librosa
    power = np.mean(np.abs(librosa.stft(np.asarray(audio, np.float32), n_fft=n_fft,
                                        hop_length=n_fft // 4)) ** 2, axis=1)
    bin_hz = sr / n_fft
    rate = sr / hop
    ratios = []
    for k in range(1, int(fmax // rate) + 1):
        centre = k * rate / bin_hz
        lo, hi = int(round(centre - rate / 2 / bin_hz)), int(round(centre + rate / 2 / bin_hz))
        peak = power[int(round(centre)) - 1:int(round(centre)) + 2].max()
        band = np.concatenate([power[lo:int(round(centre)) - 3], power[int(round(centre)) + 4:hi]])
        ratios.append(10.0 * np.log10((peak + 1e-20) / (np.median(band) + 1e-20)))
    return float(np.mean(ratios))


def log_mel_l1(ref_mel, out, audio_config):
    """Mean |log_mel(out) - ref_mel| with tf_melgan.audio's recipe ([frames, n_mels])."""
    from tf_melgan.audio import log_mel_numpy  # loads TensorFlow; the other metrics do not
    mel = log_mel_numpy(np.asarray(out, np.float32), audio_config)
    n = min(len(mel), len(ref_mel))
    return float(np.mean(np.abs(mel[:n] - ref_mel[:n])))


def speech_scores(ref, out, sr, hop, ref_pitch=None, pesq_stoi=True, mos=False):
    """Every figure above for one clip, as a dict (voicing, f0_error_cents, pesq_wb, stoi,
    frame_comb_db; with `mos`, dnsmos's too). `ref_pitch` = pitch(ref) when already
    computed."""
    ref, out = _same_length(np.asarray(ref), np.asarray(out))
    scores = pitch_scores(ref_pitch if ref_pitch is not None else pitch(ref, sr, hop),
                          out, sr, hop)
    scores["frame_comb_db"] = frame_comb_db(out, sr, hop)
    if pesq_stoi:
        scores["pesq_wb"] = pesq_wb(ref, out, sr)
        scores["stoi"] = stoi(ref, out, sr)
    if mos:
        scores.update(dnsmos(out, sr))
    return scores
