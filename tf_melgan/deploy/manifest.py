"""The manifest that travels with every export: one typed record, one writer, one reader.

A SavedModel carries it as the asset `assets/tf_melgan.json`; a .tflite as `OUT.json`
beside it. Its JSON layout is the one both formats have always written (old exports and
tests' fixtures read unchanged): the common fields (audio config, mel recipe and
normalisation, architecture, receptive field, signature, which generator), then, for a
.tflite, what is specific to the file (quantization, tensor names, frames, ops, measured
quality, the smoke test's tolerances).

TensorFlow-free (NumPy and json; the config classes only when asked for an AudioConfig).
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Optional

import numpy as np

from tf_melgan import __version__
from tf_melgan.errors import TfMelganError
from tf_melgan.pretrained import portable
from tf_melgan.streaming import ReceptiveField, receptive_field

SIDECAR = "tf_melgan.json"  # a SavedModel's asset
FORMAT_VERSION = 1
QAT_RANGES = "qat"  # activation_ranges of an int8 model made with a QAT model dir's ranges
SIGNATURE, INPUT_NAME, OUTPUT_NAME = "serving_default", "mel", "audio"
MEL_RECIPE = {  # audio.mel_preset 'melgan', the default
    "name": "melgan",
    "description": "official MelGAN Audio2Mel: reflect-pad (n_fft - hop_length) / 2 samples "
                   "on each side, STFT center=False with a periodic Hann window of "
                   "win_length centred in n_fft, magnitude, librosa Slaney mel filterbank "
                   "(fmin, fmax; fmax null = sample_rate / 2), log10(max(mel, log_clamp)); "
                   "frames = samples // hop_length; audio peak-normalised to `peak`",
    "pad": "reflect (n_fft - hop_length) / 2",
    "center": False,
    "window": "hann (periodic)",
    "magnitude": "abs",
    "mel_filterbank": "slaney (librosa default)",
    "log": "log10",
}


class ManifestError(TfMelganError, ValueError):
    """A manifest is missing a field or has a wrong one; the message says which."""


@dataclasses.dataclass
class Manifest:
    """What an export is and how to feed it. Common fields first; `file` and the fields
    after it are those of a .tflite (None for a SavedModel)."""
    audio: dict
    mel_recipe: dict
    mel_stats: Optional[dict]
    generator: Optional[dict]
    signature: dict
    min_frames: int
    receptive_field_frames: Optional[dict]
    source: Optional[dict] = None
    format: str = "tf_melgan"
    format_version: int = FORMAT_VERSION
    tf_melgan_version: Optional[str] = None
    # --- LiteRT (.tflite) only
    file: Optional[str] = None              # 'tflite'
    # (where the generator came from, which one: `source`; files of version 1 written before
    # that also had top-level model_dir / which, ignored on reading)
    quantization: Optional[str] = None      # float32 | fp16 | int8 | dynamic_range
    float_layers: Optional[list] = None
    activation_ranges: Optional[str] = None  # int8: minmax | pX | qat (QAT_RANGES)
    hop_length: Optional[int] = None
    n_mels: Optional[int] = None
    input: Optional[dict] = None            # tensor name, dtype, shape, quantization
    output: Optional[dict] = None
    frames: Optional[dict] = None           # {'mode', 'fixed', 'min'}
    reflection_pad: Optional[str] = None
    size_bytes: Optional[int] = None
    ops: Optional[dict] = None
    kernels: Optional[dict] = None
    calibration: Optional[dict] = None
    validation: Optional[dict] = None       # measured quality against the Keras model
    golden: Optional[dict] = None
    smoke_tolerance: Optional[dict] = None
    versions: Optional[dict] = None

    _ORDER = ("format", "format_version", "tf_melgan_version", "audio", "mel_recipe",
              "mel_stats", "generator", "signature", "min_frames", "receptive_field_frames",
              "source")

    def to_dict(self) -> dict:
        fields = dataclasses.asdict(self)
        common = {k: fields.pop(k) for k in self._ORDER}
        if common["source"] is None:
            del common["source"]
        if self.file is None:  # a SavedModel's: no file fields
            return common
        return {**common, **fields}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def from_dict(cls, d: dict) -> "Manifest":
        """Any manifest this project wrote; unknown keys are ignored."""
        if not isinstance(d, dict) or "audio" not in d:
            raise ManifestError("not a tf-melgan manifest (no 'audio')")
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in d.items() if k in names}
        values.setdefault("mel_recipe", {"name": d["audio"].get("mel_preset", "melgan")})
        values.setdefault("mel_stats", None)
        values.setdefault("generator", None)
        values.setdefault("signature", {"name": SIGNATURE, "input": INPUT_NAME,
                                        "output": OUTPUT_NAME})
        values.setdefault("min_frames", 4)
        values.setdefault("receptive_field_frames", None)
        return cls(**values)

    # --- typed views
    @property
    def hop(self) -> int:
        return int((self.generator or {}).get("hop_length") or self.hop_length
                   or self.audio["hop_length"])

    @property
    def signature_name(self) -> str:
        return self.signature["name"] if isinstance(self.signature, dict) else self.signature

    def stats(self) -> Optional[np.ndarray]:
        """The embedded per-band normalisation, [2, n_mels] (mean, std), or None."""
        if not self.mel_stats:
            return None
        stats = np.array([self.mel_stats["mean"], self.mel_stats["std"]], np.float64)
        if stats.shape != (2, self.audio["n_mels"]):
            raise ManifestError(f"mel_stats of shape {stats.shape}")
        return stats

    def audio_config(self):
        """The AudioConfig the mel is computed with (normalisation: `stats()`)."""
        from tf_melgan.config import AudioConfig  # needs PyYAML: not in a LiteRT-only runtime
        audio = AudioConfig(**self.audio)
        audio.stats_path = None  # embedded as mel_stats
        return audio

    def receptive_field(self):
        """streaming.ReceptiveField: the frames stored from the built model at export; for
        a manifest without them, derived from a waveform generator's block; else None."""
        if self.receptive_field_frames:
            left, right = (int(self.receptive_field_frames[k]) for k in ("left", "right"))
            return ReceptiveField(left, right, float(left), float(right))
        if self.generator and "ratios" in self.generator:
            return receptive_field(self.generator)
        return None


def _mel_recipe(audio) -> dict:
    name = getattr(audio, "mel_preset", "melgan")
    recipe = dict(MEL_RECIPE) if name == "melgan" else {"name": name}
    preset = getattr(audio, "preset", None)
    if preset is not None and dataclasses.is_dataclass(preset):
        recipe["preset"] = dataclasses.asdict(preset)
    return recipe


def _mel_stats(audio) -> Optional[dict]:
    """The per-band (mean, std) the mel is normalised with, embedded (the stats file's
    path does not travel with the export); None without normalisation."""
    path = getattr(audio, "stats_path", None)
    if not path:
        return None
    stats = np.load(path, allow_pickle=False).astype(np.float64)
    if stats.shape != (2, audio.n_mels):
        raise ManifestError(f"{path}: mel stats of shape {stats.shape}, expected "
                            f"(2, {audio.n_mels})")
    return {"mean": stats[0].tolist(), "std": stats[1].tolist(),
            "formula": "(log_mel - mean) / std"}


def manifest_for(config, generator, source=None, **fields) -> Manifest:
    """The one writer: the manifest of an export of `generator` (built from `config`); its
    architecture and receptive field are read from the built model. `source`:
    (model_dir, checkpoint.GeneratorSource), which generator was exported; `fields`: the
    format's own (a .tflite's quantization, tensors, measured quality...)."""
    field = generator.receptive_field
    audio = dict(vars(config.audio))
    if "stats_path" in audio:
        audio["stats_path"] = None  # embedded as mel_stats
    return Manifest(
        tf_melgan_version=__version__,
        audio=audio,
        mel_recipe=_mel_recipe(config.audio),
        mel_stats=_mel_stats(config.audio),
        generator=generator.describe(),
        signature={"name": SIGNATURE, "input": INPUT_NAME, "output": OUTPUT_NAME,
                   "input_shape": [None, None, config.audio.n_mels],
                   "output_shape": [None, None], "dtype": "float32"},
        min_frames=generator.min_frames,
        receptive_field_frames={"left": field.left, "right": field.right},
        source=_source(source),
        **fields)


def _source(source) -> Optional[dict]:
    if not source:
        return None
    described = source[1].as_dict()
    if described.get("path"):
        described["path"] = portable(described["path"])
    return {"model_dir": portable(source[0]), **described}


def sidecar_path(model_path: str) -> str:
    """Where a .tflite's manifest is written: OUT.json beside OUT.tflite."""
    return os.path.splitext(model_path)[0] + ".json"


def golden_path(model_path: str) -> str:
    return os.path.splitext(model_path)[0] + ".golden.npz"


def manifest_file(path: str) -> Optional[str]:
    """The manifest file of an export (a SavedModel dir, a .tflite file), or None. Also
    finds those placed by hand: DIR/tf_melgan.json, X.tflite.json, tf_melgan.json beside X."""
    if os.path.isdir(path):
        candidates = [os.path.join(path, "assets", SIDECAR), os.path.join(path, SIDECAR)]
    else:
        candidates = [sidecar_path(path), path + ".json",
                      os.path.join(os.path.dirname(path), SIDECAR)]
    return next((c for c in candidates if os.path.isfile(c)), None)


def read_manifest(path: str) -> Optional[Manifest]:
    """The one reader: the manifest of an export, None if it has none. Raises
    ManifestError for one that cannot be read."""
    found = manifest_file(path)
    if found is None:
        return None
    try:
        with open(found, encoding="utf-8") as f:
            return Manifest.from_dict(json.load(f))
    except (ValueError, TypeError) as e:
        raise ManifestError(f"{found}: not a valid manifest ({e})") from None
