"""Imports official PyTorch MelGAN weights (descriptinc/melgan-neurips) into a model dir.

    python -m tf_melgan.import_pytorch --checkpoint netG.pt [--discriminator netD.pt] \\
        --output DIR [--set audio.sample_rate=22050 ...]

DIR gets `config.yaml` (a full Config: the sizes read off the tensors, the defaults of
configs/base.yaml otherwise, then the --set overrides), `checkpoints/ckpt-0`, the layout
`python -m tf_melgan.train --model_dir DIR` resumes from (step 0, fresh Adam slots), and
`best_generator.weights.h5` (the imported generator, what inference loads first; training
replaces it after its first validation). Without --discriminator the discriminator is
freshly initialised.

Accepted files (read with `torch.load(weights_only=True)`, so a pickle cannot run code):
  * a plain state_dict, as the official code saves (`netG.pt`, `best_netG.pt`, `netD.pt`);
  * a dict whose only tensor-dict entry is under 'state_dict' or 'model' (e.g. a training
    checkpoint {'model': state_dict, 'step': 10}); both keys holding one is ambiguous;
  * keys prefixed 'module.' (nn.DataParallel) and weight norm saved by
    `torch.nn.utils.parametrizations.weight_norm` ('parametrizations.weight.original0/1'
    = weight_g / weight_v) are renamed to the official layout.
Anything else raises CheckpointImportError with a one-line reason.

Layouts: PyTorch Conv1d weight (out, in/groups, k) -> Keras Conv1D kernel (k, in/groups,
out); ConvTranspose1d weight (in, out, k) -> Keras Conv1DTranspose kernel (k, out, in):
both are transpose(2, 1, 0), no kernel flip. weight_g (C, 1, 1) -> g (C,). Weight norm is
kept (g and v), so the imported model trains exactly as the PyTorch one would.

Not stored in the weights, hence the defaults unless overridden with --set: the audio
settings other than n_mels and hop_length (sample_rate, n_fft, win_length, fmin, fmax),
and everything about training.
"""

from __future__ import annotations

import math
import os
import re
import sys
import warnings

import numpy as np

from tf_melgan.atomic import replacing, write_text
from tf_melgan.cli import (DEBUG_HELP, debug_requested, new_flags, parse_flags, python_command,
                           quiet_tensorflow)
from tf_melgan.config import Config, ConfigError, config_from_dict
from tf_melgan.errors import TfMelganError

# TensorFlow, torch and the Keras models are imported where they are used: --help stays
# fast and needs neither.


class CheckpointImportError(TfMelganError, ValueError):
    """A PyTorch checkpoint cannot be imported; the message names the file and the reason."""


# ------------------------------------------------------------------------------ reading


def _load_torch(path: str):
    try:
        import torch
    except ImportError:
        raise CheckpointImportError(
            "reading PyTorch checkpoints needs PyTorch: pip install torch "
            "(the CPU build is enough)") from None
    if not os.path.exists(path):
        raise CheckpointImportError(f"{path}: no such file")
    if not os.path.isfile(path):
        raise CheckpointImportError(f"{path}: not a file")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # torch raises KeyError, EOFError, RuntimeError, ... for junk
            text = str(e)
            if "Weights only load failed" in text or "weights_only" in text:
                found = re.search(r"Unsupported global: GLOBAL (\S+)", text)
                what = f" ({found.group(1)})" if found else ""
                raise CheckpointImportError(
                    f"{path}: refused, the pickle holds objects other than tensors and plain "
                    f"containers{what}; loading it would run code. Re-save just the weights "
                    f"with torch.save(model.state_dict(), path)") from None
            reason = f"{type(e).__name__}: {text.splitlines()[0][:120]}" if text else \
                type(e).__name__
            raise CheckpointImportError(
                f"{path}: not a PyTorch checkpoint (torch.load failed with {reason})") from None


def _is_tensor_dict(obj) -> bool:
    import torch
    return isinstance(obj, dict) and bool(obj) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


def _normalise_keys(state: dict) -> dict:
    if all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    renamed = {}
    for key, value in state.items():
        key = key.replace(".parametrizations.weight.original0", ".weight_g")
        key = key.replace(".parametrizations.weight.original1", ".weight_v")
        renamed[key] = value
    return renamed


def read_state_dict(path: str) -> dict:
    """Loads `path` safely and returns {key: float32 numpy array} in the official layout."""
    obj = _load_torch(path)
    if not isinstance(obj, dict):
        raise CheckpointImportError(
            f"{path}: not a state_dict (the file holds a {type(obj).__name__}, expected a "
            f"dict of tensors)")
    if not _is_tensor_dict(obj):
        wrapped = [k for k in ("state_dict", "model") if _is_tensor_dict(obj.get(k))]
        if len(wrapped) > 1:
            raise CheckpointImportError(
                f"{path}: ambiguous checkpoint, both 'state_dict' and 'model' hold weights")
        if not wrapped:
            keys = ", ".join(repr(k) for k in list(obj)[:5]) or "none"
            raise CheckpointImportError(
                f"{path}: not a state_dict (a dict of tensors, or one under 'state_dict' or "
                f"'model'); its keys: {keys}")
        obj = obj[wrapped[0]]
    state = {}
    for key, tensor in _normalise_keys(obj).items():
        if not tensor.is_floating_point():
            raise CheckpointImportError(f"{path}: {key} is {tensor.dtype}, expected floats")
        array = tensor.detach().float().numpy()
        if not np.all(np.isfinite(array)):
            raise CheckpointImportError(f"{path}: {key} contains NaN or infinite values")
        state[key] = array
    return state


# ------------------------------------------------------------- official key <-> our layers


def generator_key_map(generator) -> list:
    """[(official key prefix, our WeightNormalization layer)] for a Generator.

    Official nn.Sequential indices: 0 pad, 1 conv; per stage a LeakyReLU, the transposed
    conv and the residual blocks; then LeakyReLU, pad, conv, tanh."""
    pairs = [("model.1", generator.conv_pre)]
    index = 2
    for up, blocks in zip(generator.upsamplers, generator.stages):
        pairs.append((f"model.{index + 1}", up))
        for j, block in enumerate(blocks):
            prefix = f"model.{index + 2 + j}"
            pairs += [(f"{prefix}.block.2", block.conv_dilated),
                      (f"{prefix}.block.4", block.conv_1x1),
                      (f"{prefix}.shortcut", block.shortcut)]
        index += 2 + len(blocks)
    pairs.append((f"model.{index + 2}", generator.conv_post))
    return pairs


def discriminator_key_map(discriminator) -> list:
    """[(official key prefix, our WeightNormalization layer)] for a MultiScaleDiscriminator."""
    pairs = []
    for i, scale in enumerate(discriminator.discriminators):
        last = len(scale.convs) - 1
        for j, conv in enumerate(scale.convs):
            suffix = ".1" if j == 0 else "" if j == last else ".0"
            pairs.append((f"model.disc_{i}.model.layer_{j}{suffix}", conv))
    return pairs


def _torch_shapes(prefix, layer) -> dict:
    """The official tensor shapes for one of our (built) weight-normed conv layers."""
    kernel = tuple(layer.layer.kernel.shape)  # Conv1D (k, in/g, out); transpose (k, out, in)
    shapes = {f"{prefix}.weight_v": kernel[::-1], f"{prefix}.weight_g": (kernel[-1], 1, 1)}
    if layer.layer.use_bias:
        shapes[f"{prefix}.bias"] = tuple(layer.layer.bias.shape)
    return shapes


def expected_shapes(key_map) -> dict:
    shapes = {}
    for prefix, layer in key_map:
        shapes.update(_torch_shapes(prefix, layer))
    return shapes


def check_state_dict(state: dict, expected: dict, path: str) -> None:
    """Raises CheckpointImportError unless `state` has exactly the `expected` keys and shapes."""
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]

    def some(keys):
        return ", ".join(keys[:3]) + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")

    if missing or unexpected:
        parts = ([f"missing {len(missing)} key(s): {some(missing)}"] if missing else []) + \
            ([f"unexpected {len(unexpected)} key(s): {some(unexpected)}"] if unexpected else [])
        raise CheckpointImportError(f"{path}: {'; '.join(parts)}")
    wrong = [f"{k} is {tuple(state[k].shape)}, expected {expected[k]}"
             for k in expected if tuple(state[k].shape) != tuple(expected[k])]
    if wrong:
        more = f" (and {len(wrong) - 1} more)" if len(wrong) > 1 else ""
        raise CheckpointImportError(f"{path}: wrong shape: {wrong[0]}{more}")


def assign(key_map, state: dict) -> None:
    """Copies official tensors into our layers: transpose(2, 1, 0) for kernels, g squeezed."""
    for prefix, layer in key_map:
        layer.layer.kernel.assign(np.transpose(state[f"{prefix}.weight_v"], (2, 1, 0)))
        layer.g.assign(state[f"{prefix}.weight_g"].reshape(-1))
        if layer.layer.use_bias:
            layer.layer.bias.assign(state[f"{prefix}.bias"])


# ----------------------------------------------------------------------- size inference


_G_KEY = re.compile(r"model\.(\d+)\.(?:(block\.\d+|shortcut)\.)?(weight_g|weight_v|bias)")
_D_KEY = re.compile(r"model\.disc_(\d+)\.model\.layer_(\d+)(?:\.\d+)?\.(weight_g|weight_v|bias)")


def _shape(state, key, path, ndim=3):
    if key not in state:
        raise CheckpointImportError(f"{path}: missing key {key}")
    shape = state[key].shape
    if len(shape) != ndim:
        raise CheckpointImportError(f"{path}: {key} has shape {tuple(shape)}, expected "
                                    f"{ndim} dimensions")
    return shape


def _plain_weights_hint(state, path):
    if any(k.endswith(".weight") for k in state) and not any(k.endswith(".weight_v")
                                                             for k in state):
        raise CheckpointImportError(
            f"{path}: has plain '.weight' tensors, not weight norm's weight_g/weight_v "
            f"(was remove_weight_norm applied?); expected the official training layout")


def _match_keys(state: dict, pattern, path: str, what: str) -> list:
    """Every key's match of `pattern`; refuses a state_dict with any other key."""
    matches = [pattern.fullmatch(k) for k in state]
    bad = [k for k, m in zip(state, matches) if m is None]
    if bad:
        raise CheckpointImportError(
            f"{path}: not a MelGAN {what} state_dict; unexpected key(s): "
            f"{', '.join(bad[:3])}{' ...' if len(bad) > 3 else ''}")
    return matches


def infer_generator(state: dict, path: str = "generator") -> dict:
    """n_mels, ngf, ratios, n_residual_layers of an official-layout generator state_dict."""
    if any(k.startswith("model.disc_") for k in state):
        raise CheckpointImportError(f"{path}: this is a discriminator state_dict "
                                    f"(model.disc_* keys); pass it as the discriminator")
    _plain_weights_hint(state, path)
    matches = _match_keys(state, _G_KEY, path, "generator")
    plain = sorted({int(m.group(1)) for m in matches if m.group(2) is None})
    if len(plain) < 3 or plain[0] != 1:
        raise CheckpointImportError(
            f"{path}: not a MelGAN generator state_dict: expected convs at model.1, the "
            f"upsampling stages and the output, found top-level convs at {plain}")
    stages, post = plain[1:-1], plain[-1]
    n_residual_layers, remainder = divmod(post - 4, len(stages))
    n_residual_layers -= 2
    if remainder or n_residual_layers < 0:
        raise CheckpointImportError(
            f"{path}: layer indices {plain} do not follow the MelGAN layout")
    ratios = []
    for i in stages:
        k = _shape(state, f"model.{i}.weight_v", path)[2]
        if k % 2:
            raise CheckpointImportError(f"{path}: model.{i} has kernel size {k}; an "
                                        f"upsampling layer's is 2 * ratio (even)")
        ratios.append(k // 2)
    n_mels = int(_shape(state, "model.1.weight_v", path)[1])
    ngf = int(_shape(state, f"model.{post}.weight_v", path)[1])
    return dict(n_mels=n_mels, ngf=ngf, ratios=ratios, n_residual_layers=n_residual_layers)


def infer_discriminator(state: dict, path: str = "discriminator") -> dict:
    """num_scales, ndf, n_layers, downsampling, max_channels of an official discriminator."""
    if state and all(_G_KEY.fullmatch(k) for k in state):
        raise CheckpointImportError(f"{path}: this is a generator state_dict; pass it as "
                                    f"the generator (--checkpoint)")
    _plain_weights_hint(state, path)
    matches = _match_keys(state, _D_KEY, path, "discriminator")
    scales = {int(m.group(1)) for m in matches}
    layers = {int(m.group(2)) for m in matches}
    num_scales, n_layers = max(scales) + 1, max(layers) - 2
    if n_layers < 0:
        raise CheckpointImportError(f"{path}: too few layers for a MelGAN discriminator")
    ndf = int(_shape(state, "model.disc_0.model.layer_0.1.weight_v", path)[0])
    downsampling = 4
    if n_layers:
        k = _shape(state, "model.disc_0.model.layer_1.0.weight_v", path)[2]
        downsampling = max(1, (k - 1) // 10)
    final = int(_shape(state, f"model.disc_0.model.layer_{n_layers + 1}.0.weight_v", path)[0])

    def channels(cap):
        c, seq = ndf, [ndf]
        for _ in range(n_layers):
            c = min(c * downsampling, cap)
            seq.append(c)
        return seq + [min(c * 2, cap)]

    # `final` as the cap always reproduces the sequence; prefer the default 1024 when equal.
    max_channels = 1024 if channels(1024) == channels(final) else final
    return dict(num_scales=num_scales, ndf=ndf, n_layers=n_layers, downsampling=downsampling,
                max_channels=max_channels)


# ----------------------------------------------------------------------------- building


def _nearest_multiple(value, step):
    return max(step, int(round(value / step)) * step)


def config_overrides_for(generator_sizes: dict, discriminator_sizes: dict | None) -> list:
    """'section.key=value' overrides that make a default Config match the imported sizes."""
    defaults = Config()
    hop = math.prod(generator_sizes["ratios"])
    out = [f"audio.n_mels={generator_sizes['n_mels']}", f"audio.hop_length={hop}",
           f"generator.ngf={generator_sizes['ngf']}",
           f"generator.ratios={list(generator_sizes['ratios'])}",
           f"generator.n_residual_layers={generator_sizes['n_residual_layers']}"]
    if hop != defaults.audio.hop_length:  # lengths must stay multiples of the hop
        out += [f"training.segment_length="
                f"{_nearest_multiple(defaults.training.segment_length, hop)}",
                f"data.eval_segment_length="
                f"{_nearest_multiple(defaults.data.eval_segment_length, hop)}"]
    for key, value in (discriminator_sizes or {}).items():
        out.append(f"discriminator.{key}={value}")
    return out


def generator_from_state_dict(state: dict, path: str = "generator"):
    """A weight-normed Generator holding the official `state` and the sizes it inferred."""
    from tf_melgan.generator import Generator  # loads TensorFlow: not for --help
    sizes = infer_generator(state, path)
    generator = Generator(**sizes, weight_norm=True, name="generator")
    generator.build((None, None, sizes["n_mels"]))
    key_map = generator_key_map(generator)
    check_state_dict(state, expected_shapes(key_map), path)
    assign(key_map, state)
    return generator, sizes


def _existing_model_dir(output_dir: str) -> bool:
    import tensorflow as tf

    from tf_melgan.checkpoint import BEST_WEIGHTS  # loads TensorFlow: not for --help
    return (any(os.path.exists(os.path.join(output_dir, name))
                for name in ("config.yaml", BEST_WEIGHTS)) or
            tf.train.latest_checkpoint(os.path.join(output_dir, "checkpoints")) is not None)


def import_state_dicts(generator_path: str, output_dir: str, discriminator_path=None,
                       config_overrides=()) -> str:
    """Writes a tf_melgan model dir holding the official PyTorch weights; returns the path
    of the checkpoint written (DIR/checkpoints/ckpt-0).

    `config_overrides` ('section.key=value') apply on top of the inferred sizes, e.g.
    'audio.sample_rate=24000' for a model trained at another rate. Raises
    CheckpointImportError (a ValueError) for unusable files, ConfigError for bad overrides.
    """
    import keras
    import tensorflow as tf

    from tf_melgan.model import MelGAN, make_optimizer  # loads TensorFlow: not for --help

    g_state = read_state_dict(generator_path)
    g_sizes = infer_generator(g_state, generator_path)
    d_state = d_sizes = None
    if discriminator_path is not None:
        d_state = read_state_dict(discriminator_path)
        d_sizes = infer_discriminator(d_state, discriminator_path)
    if _existing_model_dir(output_dir):
        raise CheckpointImportError(f"{output_dir}: already holds a model (config.yaml or "
                                    f"checkpoints); choose a new --output directory")
    overrides = config_overrides_for(g_sizes, d_sizes) + list(config_overrides)
    try:
        config = config_from_dict({}, overrides)
    except ConfigError as e:
        raise ConfigError(f"the imported sizes ({', '.join(overrides[:5])}) and overrides "
                          f"give an invalid config: {e}; fix it with --set") from None
    keras.utils.set_random_seed(config.training.seed)
    gan = MelGAN.from_config_dataclass(config)
    # The overrides may not change the architecture: the tensors fix it.
    g_map = generator_key_map(gan.generator)
    check_state_dict(g_state, expected_shapes(g_map), generator_path)
    d_map = discriminator_key_map(gan.discriminator)
    if d_state is not None:
        check_state_dict(d_state, expected_shapes(d_map), discriminator_path)
    gan.compile(make_optimizer(config.g_optimizer), make_optimizer(config.d_optimizer))
    assign(g_map, g_state)
    if d_state is not None:
        assign(d_map, d_state)

    write_text(os.path.join(output_dir, "config.yaml"), config.to_yaml())
    checkpoint = tf.train.Checkpoint(generator=gan.generator, discriminator=gan.discriminator,
                                     g_optimizer=gan.g_optimizer, d_optimizer=gan.d_optimizer)
    manager = tf.train.CheckpointManager(checkpoint, os.path.join(output_dir, "checkpoints"),
                                         max_to_keep=config.training.keep_checkpoints)
    saved = manager.save(checkpoint_number=0)
    # What tf_melgan.checkpoint.load_generator(DIR) reads first; training replaces it with
    # its best generator after its first validation (there is no best.json yet).
    from tf_melgan.checkpoint import BEST_WEIGHTS  # loads TensorFlow: not for --help
    with replacing(os.path.join(output_dir, BEST_WEIGHTS)) as tmp:
        gan.generator.save_weights(tmp)
    return saved


# ---------------------------------------------------------------------------------- CLI


def _define_flags():
    from absl import flags

    fv = new_flags()
    flags.DEFINE_string("checkpoint", None, "Official generator state_dict (netG.pt).",
                        flag_values=fv)
    flags.DEFINE_string("discriminator", None, "Official discriminator state_dict (netD.pt); "
                        "without it the discriminator starts from scratch.", flag_values=fv)
    flags.DEFINE_string("output", None, "New model dir to write (config.yaml, checkpoints/).",
                        flag_values=fv)
    flags.DEFINE_multi_string("set", [], "Config override section.key=value, repeatable "
                              "(e.g. audio.sample_rate=24000).", flag_values=fv)
    flags.DEFINE_boolean("debug", False, DEBUG_HELP, flag_values=fv)
    return fv


def main(argv) -> int:
    """Runs the CLI on argv (argv[0] is the program); returns the exit status. Errors are
    one line on stderr ('import error: ...')."""

    fv = _define_flags()
    status = parse_flags(fv, argv, __doc__, required=("checkpoint", "output"))
    if status is not None:
        return status
    debug = debug_requested(fv.debug)
    quiet_tensorflow(debug)
    if not debug:
        from absl import logging as absl_logging
        absl_logging.set_verbosity(absl_logging.WARNING)  # TF's checkpoint-writer INFO lines
    try:
        saved = import_state_dicts(fv.checkpoint, fv.output, fv.discriminator, fv.set)
    except (CheckpointImportError, ConfigError) as e:
        if debug:
            raise
        print(f"import error: {e}", file=sys.stderr)
        return 1
    what = "generator and discriminator" if fv.discriminator else \
        "generator (discriminator freshly initialised)"
    print(f"imported {what} into {fv.output} ({saved}); resume training with\n"
          f"  {python_command()} -m tf_melgan.train --model_dir {fv.output}")
    return 0


def cli():
    sys.exit(main(sys.argv))


if __name__ == "__main__":
    cli()
