"""The graphs an export holds: the generator rebuilt with its export options, and the one
SavedModel archive (signature 'serving_default': 'mel' -> 'audio') that both the
SavedModel export and the LiteRT converter write."""

from __future__ import annotations

import keras
import tensorflow as tf

from tf_melgan.builders import rebuild
from tf_melgan.deploy.manifest import INPUT_NAME, OUTPUT_NAME, SIGNATURE


def export_generator(generator, pad_mode: str = "slices", polyphase: bool = True):
    """A copy of `generator` with weight norm folded, built from its config with the
    export's graph options (ReflectionPad1D `pad_mode`, `polyphase` upsamplers; the same
    numbers) and its weights copied in. The LiteRT default: reflection pads as slices +
    concat and upsamplers as kernel-2 convs + reshape, ops XNNPACK runs (it takes neither
    MIRROR_PAD nor GATHER; TRANSPOSE_CONV runs slower), with no run-time shape arithmetic,
    so a dynamic-length model runs as fast as a fixed-length one."""

    plain = generator.folded()
    options = {k: v for k, v in (("pad_mode", pad_mode), ("polyphase", polyphase))
               if k in plain.get_config()}  # a Fourier head has no upsamplers
    graph = rebuild(plain, name=f"{generator.name}_export", **options)
    graph.set_weights(plain.get_weights())
    return graph


def _attach_asset(archive, name: str, path: str) -> None:
    """Makes `path` a real SavedModel asset of `archive` (copied to assets/, reachable as
    loaded.<name>). Private `_tf_trackable`: ExportArchive.track() takes a tf.Module but
    saves only its lookup tables, and has no public way to add an asset. Checked with
    Keras 3.15.1 (TF 2.21.0); without the attribute the file is copied to assets/ by hand
    (see saved_model.export_saved_model)."""
    root = getattr(archive, "_tf_trackable", None)
    if root is not None:
        setattr(root, name, tf.saved_model.Asset(path))


def serving_archive(generator, n_mels: int, batch=None, frames=None, check_frames=True,
                    manifest_path=None):
    """A keras.export.ExportArchive with the one `serving_default` endpoint: 'mel' float32
    [batch, frames, n_mels] -> {'audio': [batch, frames * hop]}. `check_frames`: refuse
    fewer than the generator's min_frames at run time (an assert op: not in a LiteRT graph);
    `manifest_path`: the manifest, attached as the asset tf_melgan_config."""

    # Endpoint variables are tracked automatically; track(generator) would only add a
    # slow walk over the layers looking for lookup tables.
    archive = keras.export.ExportArchive()
    if manifest_path:
        _attach_asset(archive, "tf_melgan_config", manifest_path)

    def serve(mel):
        if check_frames:
            check = tf.debugging.assert_greater_equal(
                tf.shape(mel)[1], generator.min_frames,
                message=f"mel needs at least {generator.min_frames} frames")
            with tf.control_dependencies([check]):
                mel = tf.identity(mel)
        return {OUTPUT_NAME: generator(mel, training=False)}

    archive.add_endpoint(SIGNATURE, serve, input_signature=[
        tf.TensorSpec([batch, frames, n_mels], tf.float32, name=INPUT_NAME)])
    return archive


def write_litert_saved_model(generator, path: str, n_mels: int, frames=None,
                             mirror_pad: bool = False) -> None:
    """The SavedModel the LiteRT converter reads: the export generator (pads as slices, or
    MIRROR_PAD ops with `mirror_pad`), batch 1, `frames` or dynamic, no run-time check."""
    graph = export_generator(generator, "mirror_pad" if mirror_pad else "slices")
    serving_archive(graph, n_mels, batch=1, frames=frames, check_frames=False).write_out(
        path, verbose=False)
