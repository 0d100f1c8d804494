"""SavedModel export: python -m tf_melgan.export --model_dir DIR --output OUT [--which best].

The export has one signature, `serving_default`: input `mel` float32 [batch, frames, n_mels]
(log10 mel, batch and frames dynamic, frames >= 4) -> {'audio': float32 [batch, frames * hop]}.
Weight norm is folded. The audio config the mel must be computed with travels with it as
the asset `OUT/assets/tf_melgan.json` (`SIDECAR`). It is written with Keras' ExportArchive:
a plain `tf.saved_model.save` of a tf.Module fails TF Serving's session loader
(`saved_model_cli run`) with TF 2.21. Every export is reloaded and compared with the Keras
output, both with `tf.saved_model.load` and with the TF1 session loader TF Serving uses,
before it is moved into place; a failed check leaves nothing behind.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import sys
import tempfile

from tf_melgan.cli import DEBUG_HELP, debug_requested, one_line, parse_flags, quiet_tensorflow

SIGNATURE = "serving_default"
INPUT_NAME = "mel"
OUTPUT_NAME = "audio"
SIDECAR = "tf_melgan.json"
FORMAT_VERSION = 1
TOLERANCE = 1e-5
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


class ExportError(RuntimeError):
    """The export could not be written or did not reproduce the Keras model."""


def _mel_recipe(audio) -> dict:
    name = getattr(audio, "mel_preset", "melgan")  # presets: newer AudioConfig only
    recipe = dict(MEL_RECIPE) if name == "melgan" else {"name": name}
    preset = getattr(audio, "preset", None)
    if preset is not None and dataclasses.is_dataclass(preset):
        recipe["preset"] = dataclasses.asdict(preset)
    return recipe


def _mel_stats(audio):
    """Per-band (mean, std) the mel is normalised with, embedded in the json (the
    stats file's path does not travel with the export); None without normalisation."""
    import numpy as np

    path = getattr(audio, "stats_path", None)
    if not path:
        return None
    stats = np.load(path, allow_pickle=False).astype(np.float64)
    if stats.shape != (2, audio.n_mels):
        raise ExportError(f"{path}: mel stats of shape {stats.shape}, expected "
                          f"(2, {audio.n_mels})")
    return {"mean": stats[0].tolist(), "std": stats[1].tolist(),
            "formula": "(log_mel - mean) / std"}


def export_metadata(config, source=None) -> dict:
    """The sidecar json: audio config, mel recipe (and normalisation), architecture,
    signature, limits; with `source` (checkpoint.GeneratorSource and its model dir, as
    (model_dir, source)), which generator was exported."""
    from tf_melgan import __version__
    from tf_melgan.streaming import MIN_FRAMES, receptive_field

    field = receptive_field(config)
    audio = dict(vars(config.audio))
    stats = _mel_stats(config.audio)
    if "stats_path" in audio:
        audio["stats_path"] = None  # embedded as "mel_stats"
    return {
        "format": "tf_melgan",
        "format_version": FORMAT_VERSION,
        "tf_melgan_version": __version__,
        "audio": audio,
        "mel_recipe": _mel_recipe(config.audio),
        "mel_stats": stats,
        "generator": {"ngf": config.generator.ngf, "ratios": list(config.generator.ratios),
                      "n_residual_layers": config.generator.n_residual_layers,
                      "hop_length": math.prod(config.generator.ratios)},
        "signature": {"name": SIGNATURE, "input": INPUT_NAME, "output": OUTPUT_NAME,
                      "input_shape": [None, None, config.audio.n_mels],
                      "output_shape": [None, None], "dtype": "float32"},
        "min_frames": MIN_FRAMES,
        "receptive_field_frames": {"left": field.left, "right": field.right},
        **({"source": {"model_dir": os.path.abspath(source[0]), **source[1].as_dict()}}
           if source else {}),
    }


def read_metadata(path: str):
    """The sidecar json of a SavedModel dir (or of a file next to it); None if absent."""
    candidates = [os.path.join(path, "assets", SIDECAR), os.path.join(path, SIDECAR)]
    if not os.path.isdir(path):
        stem = os.path.splitext(path)[0]
        candidates = [path + ".json", stem + ".json",
                      os.path.join(os.path.dirname(path), SIDECAR)]
    for candidate in candidates:
        if os.path.isfile(candidate):
            with open(candidate) as f:
                return json.load(f)
    return None


def _default_config(generator):
    from tf_melgan.config import Config

    config = Config()
    config.audio.n_mels = generator.n_mels
    config.generator.ngf = generator.ngf
    config.generator.ratios = list(generator.ratios)
    config.generator.n_residual_layers = generator.n_residual_layers
    return config


def _check_consistent(generator, config):
    if generator.n_mels != config.audio.n_mels:
        raise ExportError(f"generator takes {generator.n_mels} mel bands but the config has "
                          f"audio.n_mels {config.audio.n_mels}")
    if generator.hop_length != config.audio.hop_length:
        raise ExportError(f"generator upsamples by {generator.hop_length} but the config has "
                          f"audio.hop_length {config.audio.hop_length}")
    if (list(generator.ratios) != list(config.generator.ratios)
            or generator.n_residual_layers != config.generator.n_residual_layers):
        raise ExportError("generator architecture differs from config.generator")


def serving_archive(generator, n_mels: int, batch=None, frames=None, check_frames=True):
    """A keras.export.ExportArchive with the one `serving_default` endpoint."""
    import keras
    import tensorflow as tf

    from tf_melgan.streaming import MIN_FRAMES

    # Endpoint variables are tracked automatically; track(generator) would only add a
    # slow walk over the layers looking for lookup tables.
    archive = keras.export.ExportArchive()

    def serve(mel):
        if check_frames:
            check = tf.debugging.assert_greater_equal(
                tf.shape(mel)[1], MIN_FRAMES,
                message=f"mel needs at least {MIN_FRAMES} frames")
            with tf.control_dependencies([check]):
                mel = tf.identity(mel)
        return {OUTPUT_NAME: generator(mel, training=False)}

    archive.add_endpoint(SIGNATURE, serve, input_signature=[
        tf.TensorSpec([batch, frames, n_mels], tf.float32, name=INPUT_NAME)])
    return archive


def _test_mels(n_mels, seed=0):
    import numpy as np

    rng = np.random.default_rng(seed)  # log10-mel-like values
    return [rng.normal(-2.0, 1.5, (2, 23, n_mels)).astype(np.float32),
            rng.normal(-2.0, 1.5, (1, 4, n_mels)).astype(np.float32)]


def verify_saved_model(path: str, generator, n_mels: int, tolerance: float = TOLERANCE) -> float:
    """Reloads the export both ways and compares with the Keras output; returns the max abs
    difference. Raises ExportError on a wrong signature or a difference over `tolerance`."""
    import numpy as np
    import tensorflow as tf

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
    mels = _test_mels(n_mels)
    expected = [np.asarray(generator(m, training=False)) for m in mels]
    for mel, want in zip(mels, expected):
        got = fn(**{INPUT_NAME: tf.constant(mel)})[OUTPUT_NAME].numpy()
        if got.shape != want.shape:
            raise ExportError(f"{path}: output shape {got.shape}, Keras gives {want.shape}")
        worst = max(worst, float(np.max(np.abs(got - want))))
    # The TF1 session loader (what TF Serving and `saved_model_cli run` use).
    from tensorflow.python.util import deprecation

    try:
        with tf.Graph().as_default() as graph, tf.compat.v1.Session(graph=graph) as sess, \
                deprecation.silence():
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
    if not worst <= tolerance:
        raise ExportError(f"{path}: exported output differs from Keras by {worst:.3g} "
                          f"(> {tolerance:g})")
    return worst


def _resolve(model_dir_or_generator, config, which):
    """(folded generator, config, (model_dir, GeneratorSource) or None)."""
    from tf_melgan.checkpoint import generator_source, load_generator

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
    return _export(model_dir_or_generator, output_dir, config, which, overwrite)[0]


def _export(model_dir_or_generator, output_dir, config, which, overwrite):
    """export_saved_model, also returning the max |SavedModel - Keras| it measured and
    which generator it was ((model_dir, GeneratorSource) or None)."""
    import tensorflow as tf

    generator, config, source = _resolve(model_dir_or_generator, config, which)
    _check_consistent(generator, config)
    output_dir = os.path.abspath(os.fspath(output_dir))
    if os.path.exists(output_dir):
        if not overwrite and (not os.path.isdir(output_dir) or os.listdir(output_dir)):
            raise ExportError(f"{output_dir} exists (pass overwrite=True / --overwrite)")
    parent = os.path.dirname(output_dir)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".tf_melgan_export_", dir=parent)
    try:
        meta_dir = os.path.join(staging, "meta")
        os.makedirs(meta_dir)
        meta_path = os.path.join(meta_dir, SIDECAR)
        with open(meta_path, "w") as f:
            json.dump(export_metadata(config, source), f, indent=2)
        archive = serving_archive(generator, config.audio.n_mels)
        model_path = os.path.join(staging, "model")
        tracked = getattr(archive, "_tf_trackable", None)
        if tracked is not None:  # a real SavedModel asset: copied to assets/, tracked
            tracked.tf_melgan_config = tf.saved_model.Asset(meta_path)
        archive.write_out(model_path, verbose=False)
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


def _define_flags():
    from absl import flags

    fv = flags.FlagValues()  # private: other CLIs' flags (e.g. train's) must not clash
    flags.DEFINE_string("model_dir", None, "Model dir written by tf_melgan.train, or a "
                        "shipped vocoder's name (ljspeech).", flag_values=fv)
    flags.DEFINE_string("output", None, "SavedModel directory to write.", flag_values=fv)
    flags.DEFINE_enum("which", "best", ["best", "latest"],
                      "best: best_generator.weights.h5 (lowest validation log-mel L1); "
                      "latest: the latest checkpoint.", flag_values=fv)
    flags.DEFINE_boolean("overwrite", False, "Replace an existing --output.", flag_values=fv)
    flags.DEFINE_boolean("debug", False, DEBUG_HELP, flag_values=fv)
    return fv


def cli_main(argv) -> int:
    """Runs the CLI on argv (argv[0] is the program); returns the exit code. Errors are
    one line on stderr."""
    fv = _define_flags()
    status = parse_flags(fv, argv, __doc__)
    if status is not None:
        return status
    if not fv.model_dir or not fv.output:
        print("error: --model_dir and --output are required", file=sys.stderr)
        return 2
    debug = debug_requested(fv.debug)
    quiet_tensorflow(debug)
    from tf_melgan.checkpoint import ModelDirError
    from tf_melgan.config import ConfigError
    from tf_melgan.pretrained import resolve

    fv.model_dir = resolve(fv.model_dir)
    if not os.path.isdir(fv.model_dir):
        print(f"error: {fv.model_dir}: no such model dir", file=sys.stderr)
        return 1
    try:
        path, diff, (_, source) = _export(fv.model_dir, fv.output, None, fv.which,
                                          fv.overwrite)
    except (ModelDirError, ConfigError, ExportError, OSError) as e:
        if debug:
            raise
        print(f"error: {one_line(e)}", file=sys.stderr)
        return 1
    print(f"generator: {source.describe()} of {fv.model_dir}")
    print(f"exported {fv.model_dir} ({source.which}) to {path}; signature '{SIGNATURE}': "
          f"{INPUT_NAME} [batch, frames, n_mels] -> {OUTPUT_NAME} [batch, samples]; "
          f"max |SavedModel - Keras| = {diff:.2g}")
    return 0


def cli():
    sys.exit(cli_main(sys.argv))


if __name__ == "__main__":
    cli()
