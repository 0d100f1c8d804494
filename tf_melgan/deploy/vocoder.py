"""The one Vocoder interface, whatever the format: `load_vocoder(model)` for a model dir, a
shipped vocoder's name ('ljspeech'), a SavedModel dir or a .tflite file.

TensorFlow is imported only to load a model dir or a SavedModel: a .tflite loads with
LiteRT, NumPy and this package alone.
"""

from __future__ import annotations

import os
from typing import Optional

import numpy as np

from tf_melgan.cli import one_line
from tf_melgan.deploy.litert import LiteRTModel, ModelCheckError, TFLITE_IDENTIFIER
from tf_melgan.deploy.manifest import ManifestError, OUTPUT_NAME, SIGNATURE, read_manifest
from tf_melgan.errors import TfMelganError
from tf_melgan.pretrained import no_such_model, resolve
from tf_melgan.streaming import MIN_FRAMES

# TensorFlow, and the modules that load it (checkpoint, config's YAML), are imported where a
# model dir or a SavedModel needs them: a .tflite loads with ai-edge-litert, NumPy, soundfile
# and absl-py only (tf_melgan/deploy/__init__.py).


class SynthesisError(TfMelganError, ValueError):
    """A model or an input cannot be used; the message is one line naming it."""


class Vocoder:
    """A loaded vocoder: mel [batch, frames, n_mels] (or [frames, n_mels]) float32 ->
    audio [batch, frames * hop] float32.

    `kind` is 'keras', 'saved_model', 'tflite' or 'callable'; `manifest` the export's
    manifest (None for a model dir or a callable); `audio` the AudioConfig the mel must be
    computed with and `mel_stats` its per-band normalisation ([2, n_mels], or None), None
    when the model carries none; `fixed_frames` the static frame count of a fixed-shape
    model (else None); `receptive_field` (None when unknown); `min_frames` the fewest
    frames it takes (streaming.MIN_FRAMES when unknown); `source` which generator
    it is, when known; `runtime` the LiteRTModel of a .tflite."""

    def __init__(self, fn, kind: str, path: str, n_mels: int, audio=None,
                 hop_length: Optional[int] = None, fixed_frames: Optional[int] = None,
                 receptive_field=None, manifest=None, mel_stats=None, source=None,
                 min_frames: Optional[int] = None):
        self._fn, self.kind, self.path, self.n_mels = fn, kind, path, n_mels
        self.audio, self.fixed_frames, self.receptive_field = audio, fixed_frames, receptive_field
        self._hop, self.manifest, self.mel_stats = hop_length, manifest, mel_stats
        self._source, self.runtime = source, None
        self.min_frames = MIN_FRAMES if min_frames is None else int(min_frames)

    @property
    def source(self) -> Optional[str]:
        """Which generator this is, e.g. 'best generator (step 900, ...) of runs/demo'."""
        if self._source is None and self.manifest is not None:
            self._source = _exported_source(self.manifest, self.path)  # imports TensorFlow
        return self._source

    @property
    def hop_length(self) -> int:
        if self._hop is None:  # measure it
            frames = self.fixed_frames or self.min_frames
            self._hop = self(np.zeros((1, frames, self.n_mels), np.float32)).shape[1] // frames
        return self._hop

    @property
    def sample_rate(self) -> Optional[int]:
        return None if self.audio is None else self.audio.sample_rate

    def __call__(self, mel) -> np.ndarray:
        mel = np.asarray(mel, dtype=np.float32)
        if mel.ndim == 2:
            mel = mel[None]
        out = self._fn(mel)
        if isinstance(out, dict):
            out = out[OUTPUT_NAME]
        return np.asarray(out, dtype=np.float32)

    def __repr__(self):
        return (f"Vocoder({self.kind} {self.path}, n_mels={self.n_mels}, "
                f"fixed_frames={self.fixed_frames})")


def _from_manifest(manifest, path, **kwargs) -> dict:
    """The Vocoder fields an export's manifest gives (audio config, hop, receptive field,
    normalisation, which generator); the audio config needs tf_melgan.config (PyYAML)."""
    if manifest is None:
        return kwargs
    try:
        fields = dict(audio=manifest.audio_config(), hop_length=manifest.hop,
                      receptive_field=manifest.receptive_field(), mel_stats=manifest.stats(),
                      min_frames=manifest.min_frames)
    except ModuleNotFoundError:  # a LiteRT-only environment: no config classes
        fields = dict(hop_length=manifest.hop, receptive_field=manifest.receptive_field(),
                      min_frames=manifest.min_frames)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise SynthesisError(f"{path}: the model's manifest is not valid: {one_line(e)}") \
            from None
    return {**fields, "manifest": manifest, **kwargs}


def _exported_source(manifest, path) -> Optional[str]:
    """'best generator (step 900, ...) of runs/demo, exported to PATH', if known."""
    source = manifest.source
    try:
        # checkpoint loads TensorFlow: a LiteRT-only environment leaves the source undescribed
        from tf_melgan.checkpoint import GeneratorSource
        described = GeneratorSource(source["which"], source["path"], source["step"],
                                    source["val_mel_l1"]).describe()
        return f"{described} of {source['model_dir']}, exported to {path}"
    except (TypeError, KeyError, ImportError):
        return None


def keras_vocoder(generator, config=None, path="<generator>", source=None) -> Vocoder:
    """A Keras generator (folded for speed) as a Vocoder."""
    import tensorflow as tf

    fn = tf.function(lambda mel: generator(mel, training=False), input_signature=[
        tf.TensorSpec([None, None, generator.n_mels], tf.float32)])
    return Vocoder(lambda mel: fn(mel).numpy(), "keras", path, generator.n_mels,
                   None if config is None else config.audio, generator.hop_length, None,
                   generator.receptive_field, source=source, min_frames=generator.min_frames)


def _load_model_dir(path, which):
    # TensorFlow, loaded only for a Keras model dir (a .tflite needs LiteRT alone)
    from tf_melgan.checkpoint import generator_source, load_generator

    try:
        source = generator_source(path, which).describe()
        generator, config = load_generator(path, which, fold=True)
    except TfMelganError as e:  # the model dir's or its config's one-line refusal
        raise SynthesisError(one_line(e)) from None
    except Exception as e:  # noqa: BLE001 - corrupt weights / checkpoint files
        raise SynthesisError(f"{path}: cannot load the generator ({type(e).__name__}: "
                             f"{one_line(e)})") from None
    return keras_vocoder(generator, config, path, f"{source} of {path}")


def _load_saved_model(path, manifest):
    import tensorflow as tf


    try:
        loaded = tf.saved_model.load(path)
    except Exception as e:  # noqa: BLE001
        raise SynthesisError(f"{path}: not a loadable SavedModel ({type(e).__name__}: "
                             f"{one_line(e)})") from None
    if SIGNATURE not in loaded.signatures:
        raise SynthesisError(f"{path}: SavedModel has no '{SIGNATURE}' signature")
    fn = loaded.signatures[SIGNATURE]
    inputs = fn.structured_input_signature[1]
    if len(inputs) != 1:
        raise SynthesisError(f"{path}: expected one input, the signature has {list(inputs)}")
    (name, spec), = inputs.items()
    if spec.shape.rank != 3 or spec.shape[-1] is None:
        raise SynthesisError(f"{path}: input '{name}' is {spec.shape}, expected "
                             f"[batch, frames, n_mels]")
    outputs = list(fn.structured_outputs)
    out_name = OUTPUT_NAME if OUTPUT_NAME in outputs else outputs[0]

    def run(mel):
        return fn(**{name: tf.constant(mel)})[out_name].numpy()

    vocoder = Vocoder(run, "saved_model", path, int(spec.shape[-1]),
                      **_from_manifest(manifest, path, fixed_frames=spec.shape[1]))
    vocoder._module = loaded  # keep the variables alive
    return vocoder


def _load_tflite(path, manifest, num_threads):
    try:
        runtime = LiteRTModel(path, num_threads=num_threads,
                              signature=manifest.signature_name if manifest else None)
    except ModelCheckError as e:
        raise SynthesisError(str(e)) from None
    if manifest is not None and manifest.audio["n_mels"] != runtime.n_mels:
        raise SynthesisError(f"{path}: its manifest says {manifest.audio['n_mels']} mel "
                             f"bands, the model takes {runtime.n_mels}")

    def run(mel):  # [batch, frames, n_mels]; the model takes batch 1
        return np.concatenate([runtime(item[None]) for item in mel])

    vocoder = Vocoder(run, "tflite", path, runtime.n_mels,
                      **_from_manifest(manifest, path, fixed_frames=runtime.fixed_frames))
    vocoder.runtime = runtime
    return vocoder


def load_vocoder(path: str, which: str = "best", num_threads: int = 2) -> Vocoder:
    """Loads a model dir, a shipped vocoder by name ('ljspeech'), a SavedModel dir or a
    .tflite file (`which`: a model dir's best or latest generator; `num_threads`: LiteRT's).
    Raises SynthesisError."""
    path = resolve(path)
    if not os.path.exists(path):
        raise SynthesisError(no_such_model(path))
    try:
        if os.path.isdir(path):
            if os.path.isfile(os.path.join(path, "config.yaml")):
                return _load_model_dir(path, which)
            if any(os.path.isfile(os.path.join(path, n))
                   for n in ("saved_model.pb", "saved_model.pbtxt")):
                return _load_saved_model(path, read_manifest(path))
            raise SynthesisError(f"{path}: neither a tf-melgan model dir (no config.yaml) "
                                 f"nor a SavedModel (no saved_model.pb)")
        if os.path.getsize(path) == 0:
            raise SynthesisError(f"{path}: empty file (0 bytes)")
        with open(path, "rb") as f:
            head = f.read(8)
        if path.lower().endswith(".tflite") or head[4:8] == TFLITE_IDENTIFIER:
            if head[4:8] != TFLITE_IDENTIFIER:
                raise SynthesisError(f"{path}: not a TFLite model (no TFL3 identifier)")
            return _load_tflite(path, read_manifest(path), num_threads)
    except ManifestError as e:
        raise SynthesisError(str(e)) from None
    raise SynthesisError(f"{path}: not a model; expected a model dir, a SavedModel dir or a "
                         f".tflite file")


def as_vocoder(model, which: str = "best") -> Vocoder:
    """A Vocoder from a path, a Vocoder, a keras Generator or a callable."""
    if isinstance(model, Vocoder):
        return model
    if isinstance(model, (str, os.PathLike)):
        return load_vocoder(model, which)
    if hasattr(model, "ratios") and hasattr(model, "n_mels"):
        generator = model.folded() if getattr(model, "weight_norm", False) else model
        return keras_vocoder(generator)
    if callable(model):
        n_mels = getattr(model, "n_mels", None)
        if n_mels is None:
            raise SynthesisError("a callable model needs an n_mels attribute")
        return Vocoder(model, "callable", repr(model), n_mels,
                       fixed_frames=getattr(model, "fixed_frames", None),
                       receptive_field=getattr(model, "receptive_field", None),
                       min_frames=getattr(model, "min_frames", None))
    raise SynthesisError(f"cannot use a {type(model).__name__} as a vocoder")


def mel_of_audio(audio: np.ndarray, vocoder: Vocoder) -> np.ndarray:
    """The model's input mel for audio samples (its recipe, and normalisation if any)."""
    from tf_melgan.audio import log_mel_numpy  # loads TensorFlow: only for audio inputs

    return log_mel_numpy(audio, vocoder.audio, stats=vocoder.mel_stats)
