"""SavedModel export: a generator (a model dir's, or given with its Config) as a SavedModel
with the one 'serving_default' signature ('mel' float32 [batch, frames, n_mels], batch and
frames dynamic, frames >= 4 -> 'audio' [batch, frames * hop]) and its manifest as the asset
`assets/tf_melgan.json`. Weight norm is folded. Written with Keras' ExportArchive: a plain
`tf.saved_model.save` of a tf.Module fails TF Serving's session loader (`saved_model_cli
run`) with TF 2.21. Every export is reloaded and compared with the Keras output, both with
`tf.saved_model.load` and with the TF1 session loader TF Serving uses, before it is moved
into place; a failed check leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile

import numpy as np
import tensorflow as tf

from tf_melgan.atomic import WriteError, check_writable
from tf_melgan.builders import build_generator
from tf_melgan.checkpoint import generator_source, load_generator
from tf_melgan.config import AudioConfig, Config
from tf_melgan.deploy.graph import serving_archive
from tf_melgan.deploy.manifest import INPUT_NAME, OUTPUT_NAME, SIDECAR, SIGNATURE, manifest_for
from tf_melgan.errors import TfMelganError

TOLERANCE = 1e-5  # a generator may set its own `export_tolerance` (the Fourier head's)


class ExportError(TfMelganError, RuntimeError):
    """The export could not be written or did not reproduce the Keras model."""


def _default_config(generator):

    config = Config()
    if hasattr(generator, "audio_config"):  # a FourierGenerator knows its whole STFT
        config.audio = AudioConfig(**vars(generator.audio_config))
        described = generator.describe()
        config.generator.head = "fourier"
        for key in ("body", "dim", "n_blocks", "phase", "activation"):
            setattr(config.generator, key, described[key])
        return config
    config.audio.n_mels = generator.n_mels
    config.generator.ngf = generator.ngf
    config.generator.ratios = list(generator.ratios)
    config.generator.n_residual_layers = generator.n_residual_layers
    return config


def _check_consistent(generator, config, given: bool):
    """`given`: the caller passed `config` (else it is the generator's own, nothing to
    compare the architecture with)."""
    if generator.n_mels != config.audio.n_mels:
        raise ExportError(f"generator takes {generator.n_mels} mel bands but the config has "
                          f"audio.n_mels {config.audio.n_mels}")
    if generator.hop_length != config.audio.hop_length:
        raise ExportError(f"generator upsamples by {generator.hop_length} but the config has "
                          f"audio.hop_length {config.audio.hop_length}")
    if given and generator.describe() != build_generator(config).describe():
        raise ExportError("generator architecture differs from config.generator")


def _test_mels(n_mels, min_frames, seed=0):
    """Two batches of log10-mel-like values: a longer one and the model's shortest input."""

    rng = np.random.default_rng(seed)
    return [rng.normal(-2.0, 1.5, (2, max(23, min_frames), n_mels)).astype(np.float32),
            rng.normal(-2.0, 1.5, (1, min_frames, n_mels)).astype(np.float32)]


@contextlib.contextmanager
def _deprecation_warnings_silenced():
    """Within the block, TensorFlow's Python logger shows errors only: the TF1 session
    loader (the point of the check: TF Serving runs it) logs a 'deprecated' warning on
    every call."""
    logger = logging.getLogger("tensorflow")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def verify_saved_model(path: str, generator, n_mels: int,
                       tolerance: float | None = None) -> float:
    """Reloads the export both ways and compares with the Keras output; returns the max abs
    difference. Raises ExportError on a wrong signature or a difference over `tolerance`."""

    loaded = tf.saved_model.load(path)
    if SIGNATURE not in loaded.signatures:
        raise ExportError(f"{path}: no '{SIGNATURE}' signature")
    fn = loaded.signatures[SIGNATURE]
    inputs = fn.structured_input_signature[1]
    if list(inputs) != [INPUT_NAME] or inputs[INPUT_NAME].shape.as_list() != [None, None, n_mels]:
        raise ExportError(f"{path}: unexpected inputs {inputs}")
    if list(fn.structured_outputs) != [OUTPUT_NAME]:
        raise ExportError(f"{path}: unexpected outputs {fn.structured_outputs}")
    worst = 0.0
    mels = _test_mels(n_mels, generator.min_frames)
    expected = [np.asarray(generator(m, training=False)) for m in mels]
    for mel, want in zip(mels, expected):
        got = fn(**{INPUT_NAME: tf.constant(mel)})[OUTPUT_NAME].numpy()
        if got.shape != want.shape:
            raise ExportError(f"{path}: output shape {got.shape}, Keras gives {want.shape}")
        worst = max(worst, float(np.max(np.abs(got - want))))
    # The TF1 session loader (what TF Serving and `saved_model_cli run` use).
    try:
        with tf.Graph().as_default() as graph, tf.compat.v1.Session(graph=graph) as sess, \
                _deprecation_warnings_silenced():
            meta = tf.compat.v1.saved_model.loader.load(sess, ["serve"], path)
            sig = meta.signature_def[SIGNATURE]
            feed = sig.inputs[INPUT_NAME].name
            fetch = sig.outputs[OUTPUT_NAME].name
            for mel, want in zip(mels, expected):
                got = sess.run(fetch, {feed: mel})
                worst = max(worst, float(np.max(np.abs(got - want))))
    except tf.errors.OpError as e:
        first = (e.message or "").strip().splitlines()
        raise ExportError(f"{path}: fails the TF1 session loader TF Serving uses "
                          f"({type(e).__name__}: {first[-1] if first else ''})") from e
    if tolerance is None:
        tolerance = getattr(generator, "export_tolerance", TOLERANCE)
    if not worst <= tolerance:
        raise ExportError(f"{path}: exported output differs from Keras by {worst:.3g} "
                          f"(> {tolerance:g})")
    return worst


def _resolve(model_dir_or_generator, config, which):
    """(folded generator, config, (model_dir, GeneratorSource) or None)."""

    if isinstance(model_dir_or_generator, (str, os.PathLike)):
        model_dir = os.fspath(model_dir_or_generator)
        generator, saved_config = load_generator(model_dir, which, fold=True)
        return generator, config or saved_config, (model_dir,
                                                   generator_source(model_dir, which))
    generator = model_dir_or_generator
    if not generator.built:
        generator.build((None, None, generator.n_mels))
    return generator.folded(), config or _default_config(generator), None


def export_saved_model(model_dir_or_generator, output_dir: str, config=None,
                       which: str = "best", overwrite: bool = False) -> str:
    """Exports a generator (a model dir, or a Generator with its Config) as a SavedModel in
    `output_dir`, checks it and returns the path. Raises ExportError (or ModelDirError /
    ConfigError for a bad model dir); nothing is left at `output_dir` on failure.
    """
    return export_with_report(model_dir_or_generator, output_dir, config, which, overwrite)[0]


def export_with_report(model_dir_or_generator, output_dir, config=None, which="best",
                       overwrite=False):
    """export_saved_model, also returning the max |SavedModel - Keras| it measured and
    which generator it was ((model_dir, GeneratorSource) or None)."""
    given = config is not None
    output_dir = os.path.abspath(os.fspath(output_dir))
    if os.path.exists(output_dir):
        if not overwrite and (not os.path.isdir(output_dir) or os.listdir(output_dir)):
            raise ExportError(f"{output_dir} exists (pass overwrite=True / --overwrite)")
    try:  # before the model loads: a read-only or missing place fails in one line now
        check_writable(output_dir)
    except WriteError as e:
        raise ExportError(str(e)) from None
    generator, config, source = _resolve(model_dir_or_generator, config, which)
    _check_consistent(generator, config, given)
    parent = os.path.dirname(output_dir)
    staging = tempfile.mkdtemp(prefix=".tf_melgan_export_", dir=parent)
    try:
        meta_dir = os.path.join(staging, "meta")
        os.makedirs(meta_dir)
        meta_path = os.path.join(meta_dir, SIDECAR)
        with open(meta_path, "w", encoding="utf-8") as f:
            f.write(manifest_for(config, generator, source).to_json())
        model_path = os.path.join(staging, "model")
        serving_archive(generator, config.audio.n_mels, manifest_path=meta_path).write_out(
            model_path, verbose=False)
        sidecar = os.path.join(model_path, "assets", SIDECAR)
        if not os.path.isfile(sidecar):
            os.makedirs(os.path.dirname(sidecar), exist_ok=True)
            shutil.copyfile(meta_path, sidecar)
        diff = verify_saved_model(model_path, generator, config.audio.n_mels)
        if os.path.exists(output_dir):
            if os.path.isdir(output_dir):
                shutil.rmtree(output_dir)
            else:
                os.remove(output_dir)
        os.replace(model_path, output_dir)
    except ExportError:
        raise
    except Exception as e:  # noqa: BLE001 - any failure means no export
        raise ExportError(f"exporting to {output_dir} failed: {type(e).__name__}: {e}") from e
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return output_dir, diff, source
