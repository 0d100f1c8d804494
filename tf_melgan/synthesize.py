"""Synthesis CLI: python -m tf_melgan.synthesize --model M --input X --output Y.

M: a model dir (what `tf_melgan.train` writes), a shipped vocoder's name (ljspeech), a
   SavedModel dir (`tf_melgan.export`) or a .tflite file (run with ai_edge_litert). The
   audio config comes from the model dir's config.yaml or the export's manifest
   (tf_melgan.deploy.manifest: the SavedModel's assets/tf_melgan.json, X.json next to
   X.tflite).
X: a wav/flac/ogg file (copy synthesis: audio -> log-mel -> audio), a mel `.npy` of layout
   [frames, n_mels] or [1, frames, n_mels] in the model's log-mel units (its audio.mel_preset), or a folder of
   those (searched recursively; Y is then a folder). Audio at another rate is resampled to
   the model's (one note on stderr). A mel .npy with `X.json` beside it stating
   `sample_rate` and `hop_length` is refused if they are not the model's.
Y: an audio file (.wav, .flac, .ogg) or a folder. Checked to be writable before the model
   loads; written to a temporary file renamed at the end (a full disk leaves no cut-off
   file).
Errors are one line on stderr with a non-zero exit status.

Python: `synthesize(model, mel) -> np.ndarray`; `load_vocoder(path) -> Vocoder`
(tf_melgan.deploy.vocoder, whatever the format).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Optional

import numpy as np
import soundfile as sf

from tf_melgan.atomic import check_writable, replacing
from tf_melgan.cli import (DEBUG_HELP, debug_requested, new_flags, one_line, parse_flags,
                           quiet_tensorflow)
from tf_melgan.deploy.manifest import sidecar_path
from tf_melgan.deploy.vocoder import (SynthesisError, Vocoder, as_vocoder, load_vocoder,
                                      mel_of_audio)
from tf_melgan.pretrained import shipped_help
from tf_melgan.progress import Progress, echo
from tf_melgan.streaming import MIN_FRAMES, stream, stream_all

# The modules that load TensorFlow (audio features, the Keras generator) are imported where
# they are used: --help, and synthesis with a .tflite, run without TensorFlow.

__all__ = ["MelError", "SynthesisError", "Vocoder", "load_vocoder", "main", "synthesize",
           "validate_mel"]

OUTPUT_EXTS = (".wav", ".flac", ".ogg")


class MelError(SynthesisError):
    """A mel has the wrong layout, dtype, size or values."""


def validate_mel(mel, n_mels: int, name: str = "mel", min_frames: Optional[int] = None):
    """Checks a mel and returns it as [frames, n_mels] (float32, or the memmap as is).
    Raises MelError with a one-line reason."""

    min_frames = MIN_FRAMES if min_frames is None else min_frames
    if not isinstance(mel, np.ndarray):
        mel = np.asarray(mel)
    if mel.dtype.kind != "f":
        raise MelError(f"{name}: dtype {mel.dtype}, expected a float log-mel")
    if mel.ndim == 3 and mel.shape[0] == 1:
        mel = mel[0]
    if mel.ndim != 2:
        raise MelError(f"{name}: shape {tuple(mel.shape)}, expected [frames, {n_mels}] or "
                       f"[1, frames, {n_mels}]")
    if mel.shape[1] != n_mels:
        hint = " (looks like [n_mels, frames]: transpose it)" if mel.shape[0] == n_mels else ""
        raise MelError(f"{name}: shape {tuple(mel.shape)} has {mel.shape[1]} mel bands, the "
                       f"model takes {n_mels}{hint}")
    if mel.shape[0] < min_frames:
        raise MelError(f"{name}: {mel.shape[0]} frames, the generator needs at least "
                       f"{min_frames}")
    step = 1 << 16
    for start in range(0, mel.shape[0], step):  # bounded memory for a memmap
        block = np.asarray(mel[start:start + step])
        if not np.all(np.isfinite(block)):
            bad = int(np.sum(~np.isfinite(block)))
            raise MelError(f"{name}: contains NaN or infinite values ({bad}+ entries)")
    if isinstance(mel, np.memmap):
        return mel
    return np.ascontiguousarray(mel, dtype=np.float32)


def mel_sidecar(path: str) -> dict:
    """The rate and hop a mel `.npy` was made at, from `X.json` beside `X.npy` (keys
    `sample_rate` and `hop_length`, at its top or in an `audio` block as in the export
    manifest); {} when there is no such file: a bare array cannot say."""
    side = sidecar_path(path)
    if not os.path.isfile(side):
        return {}
    try:
        with open(side, encoding="utf-8") as f:
            info = json.load(f)
    except (OSError, ValueError) as e:
        raise MelError(f"{side}: not a readable JSON file ({one_line(e)})") from None
    if not isinstance(info, dict):
        raise MelError(f"{side}: expected a JSON object with sample_rate and hop_length")
    block = info["audio"] if isinstance(info.get("audio"), dict) else info
    made = {k: block[k] for k in ("sample_rate", "hop_length") if k in block}
    for key, value in made.items():
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise MelError(f"{side}: {key} {value!r}, expected a positive integer")
    return made


def check_mel_geometry(path: str, sample_rate: Optional[int], hop_length: Optional[int]):
    """Refuses, in one line naming what the model expects, a mel `.npy` whose sidecar says
    it was made at another sample rate or hop: its frames would be read at the wrong time
    scale and its bands as other frequencies (same shape, wrong speech). What the model
    does not know (an export without a manifest has no rate) is not compared."""
    made = mel_sidecar(path)
    want = {"sample_rate": sample_rate, "hop_length": hop_length}
    if any(want[k] and made[k] != want[k] for k in made):
        raise MelError(f"{path}: made at {made.get('sample_rate', '?')} Hz, hop "
                       f"{made.get('hop_length', '?')} (its .json); the model expects "
                       f"{sample_rate or '?'} Hz, hop {hop_length}: make the mel at that rate "
                       f"and hop")


def synthesize(model, mel, chunk_frames: Optional[int] = None, context_frames=None) -> np.ndarray:
    """Audio [frames * hop] float32 for a log-mel [frames, n_mels] or [1, frames, n_mels].

    model: a path (model dir, SavedModel dir, .tflite), a Vocoder, a Generator or a callable.
    chunk_frames: synthesize chunk by chunk (`streaming.stream`, same output); a
    fixed-shape model is always run that way.
    """

    vocoder = as_vocoder(model)
    mel = validate_mel(mel, vocoder.n_mels, min_frames=vocoder.min_frames)
    if vocoder.fixed_frames is not None and (chunk_frames or mel.shape[0] != vocoder.fixed_frames):
        chunk_frames = chunk_frames or _fixed_chunk(vocoder, context_frames)
    if chunk_frames:
        return stream_all(vocoder, mel, chunk_frames, _context_of(vocoder, context_frames),
                          fixed_frames=vocoder.fixed_frames)
    return vocoder(np.asarray(mel, dtype=np.float32)[None])[0]


def _context_of(vocoder, context_frames):
    if context_frames is not None:
        return context_frames
    if vocoder.receptive_field is None:
        raise SynthesisError(f"{vocoder.path}: receptive field unknown (its json has no "
                             f"generator architecture); pass context_frames (6 for the "
                             f"8/8/2/2 generators)")
    return (vocoder.receptive_field.left, vocoder.receptive_field.right)


def _fixed_chunk(vocoder, context_frames) -> int:
    context = _context_of(vocoder, context_frames)
    left, right = (context, context) if isinstance(context, int) else context
    chunk = vocoder.fixed_frames - left - right
    if chunk < 1:
        raise SynthesisError(f"{vocoder.path}: a window of {vocoder.fixed_frames} frames "
                             f"leaves no room for {left} + {right} context frames")
    return chunk


# ---------------------------------------------------------------------------- the CLI

def _open_input(path: str):
    """The checks of an input that need no model, headers only (so a bad file is refused
    before the model loads): a .npy's array (memory-mapped), or None for an audio file
    soundfile can read. Raises SynthesisError / MelError naming the file."""
    if not os.path.isfile(path):
        raise SynthesisError(f"{path}: no such file")
    if os.path.getsize(path) == 0:
        raise SynthesisError(f"{path}: empty file (0 bytes)")
    if not path.lower().endswith(".npy"):
        try:
            sf.info(path)
        except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as e:
            raise SynthesisError(f"{path}: not a readable audio file ({e})") from None
        return None
    with open(path, "rb") as f:
        if f.read(6) != b"\x93NUMPY":
            raise MelError(f"{path}: not a .npy file (no NumPy header)")
    try:
        mel = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        reason = ("it holds Python objects, not numbers" if "object" in str(e).lower()
                  else one_line(e))
        raise MelError(f"{path}: not a readable .npy file ({reason})") from None
    if not isinstance(mel, np.ndarray):
        raise MelError(f"{path}: not a single array")
    return mel


def _read_input(path: str, vocoder: Vocoder):
    """Mel [frames, n_mels] for a .npy or an audio file."""
    # loads TensorFlow (audio's graph log-mel): not for --help
    from tf_melgan import audio as audio_lib

    mel = _open_input(path)
    if mel is not None:
        mel = validate_mel(mel, vocoder.n_mels, name=path, min_frames=vocoder.min_frames)
        check_mel_geometry(path, vocoder.sample_rate, vocoder.hop_length)
        if vocoder.audio is not None:
            low = float(np.min(mel[: 1 << 16]))
            floor = float(np.min(audio_lib.silence_mel(vocoder.audio, vocoder.mel_stats)))
            if low < floor - 0.5:
                print(f"warning: {path}: values down to {low:.1f}, below {floor:.1f} (the "
                      f"mel of silence for this model's recipe); is it in the model's mel "
                      f"units (log base, normalisation)?", file=sys.stderr)
        return mel
    if vocoder.audio is None:
        raise SynthesisError(f"{vocoder.path} carries no audio config (tf_melgan.json), so it "
                             f"cannot make a mel from {path}; give a mel .npy")
    rate_in = sf.info(path).samplerate
    if rate_in != vocoder.audio.sample_rate:
        print(f"note: {path}: {rate_in} Hz, resampled to {vocoder.audio.sample_rate} Hz (the "
              f"model's rate)", file=sys.stderr)
    try:
        audio = audio_lib.load_audio(path, vocoder.audio.sample_rate, vocoder.audio.peak)
    except audio_lib.AudioError as e:
        raise SynthesisError(one_line(e)) from None
    # min_frames frames, and more samples than the mel's reflection pad takes
    need = max(vocoder.min_frames * vocoder.audio.hop_length,
               audio_lib.stft_padding(vocoder.audio) + 1)
    if len(audio) < need:  # checked here: the mel of a shorter clip fails inside NumPy
        rate = vocoder.audio.sample_rate
        raise SynthesisError(f"{path}: too short ({len(audio)} samples at {rate} Hz); the "
                             f"vocoder needs at least {vocoder.min_frames} frames, {need} samples "
                             f"({1000 * need / rate:.0f} ms)")
    return validate_mel(mel_of_audio(audio, vocoder), vocoder.n_mels, name=path,
                        min_frames=vocoder.min_frames)


def _write(vocoder, mel, out_path, sample_rate, chunk_frames, context_frames):
    """Synthesizes `mel` into `out_path` through a temporary file renamed at the end, so a
    full disk or a kill never leaves a cut-off file there. Raises WriteError (one line)."""
    need = 2 * mel.shape[0] * vocoder.hop_length + 1024  # 16-bit PCM wav; flac/ogg smaller
    check_writable(out_path, need)  # before the work
    if vocoder.fixed_frames is not None and not chunk_frames and \
            mel.shape[0] != vocoder.fixed_frames:
        chunk_frames = _fixed_chunk(vocoder, context_frames)
    with replacing(out_path, need) as tmp:
        if not chunk_frames:
            audio = vocoder(np.asarray(mel, dtype=np.float32)[None])[0]
            sf.write(tmp, audio, sample_rate)
            return audio.shape[0]
        samples = 0
        with sf.SoundFile(tmp, "w", sample_rate, 1) as f:  # bounded memory
            for block in stream(vocoder, mel, chunk_frames,
                                _context_of(vocoder, context_frames),
                                fixed_frames=vocoder.fixed_frames):
                f.write(block)
                samples += block.shape[0]
        return samples


def _find_inputs(folder):
    from tf_melgan.data import AUDIO_EXTENSIONS  # loads TensorFlow: not for --help

    exts = AUDIO_EXTENSIONS + (".mp3",)  # the training formats, and mp3 for one-off inputs
    found = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            if name.lower().endswith(exts + (".npy",)):
                found.append(os.path.relpath(os.path.join(root, name), folder))
    return found


def _output_names(relpaths):
    stems = [os.path.splitext(p)[0] for p in relpaths]
    counts = {s: stems.count(s) for s in stems}
    return [(s if counts[s] == 1 else p) + ".wav" for s, p in zip(stems, relpaths)]


def run(model: str, input_path: str, output: str, which: str = "best", chunk_frames: int = 0,
        context_frames: Optional[int] = None, sample_rate: int = 0, verbose: int = 1) -> int:
    """The CLI without flag parsing; returns the exit status."""
    if not os.path.exists(input_path):
        raise SynthesisError(f"{input_path}: no such file or directory")
    folder_in = os.path.isdir(input_path)
    if folder_in:
        inputs = _find_inputs(input_path)
        if not inputs:
            raise SynthesisError(f"{input_path}: no audio or .npy files in it")
        if os.path.isfile(output):
            raise SynthesisError(f"{output}: is a file; a folder input needs a folder output")
    elif not (os.path.isdir(output) or output.endswith(os.sep)):
        if not output.lower().endswith(OUTPUT_EXTS):
            raise SynthesisError(f"{output}: output must end in {', '.join(OUTPUT_EXTS)} "
                                 f"or be a folder")

    out_path = os.path.join(output, "probe.wav")
    if not folder_in:
        out_path = output
        if os.path.isdir(output) or output.endswith(os.sep):
            stem = os.path.splitext(os.path.basename(input_path))[0]
            out_path = os.path.join(output, stem + ".wav")
    check_writable(out_path)  # a read-only or missing place fails before the model loads
    if not folder_in:
        _open_input(input_path)  # and so does an unreadable input
    vocoder = load_vocoder(model, which)
    if verbose:
        print(f"generator: {vocoder.source or f'{vocoder.kind} {vocoder.path}'}")
    rate = vocoder.sample_rate or sample_rate
    if not rate:
        raise SynthesisError(f"{model} carries no sample rate (no tf_melgan.json); pass "
                             f"--sample_rate")
    context = None if context_frames is None or context_frames < 0 else context_frames
    if not folder_in:
        mel = _read_input(input_path, vocoder)
        samples = _write(vocoder, mel, out_path, rate, chunk_frames, context)
        if verbose:
            print(f"{input_path} -> {out_path} ({mel.shape[0]} frames, "
                  f"{samples / rate:.2f} s)")
        return 0

    os.makedirs(output, exist_ok=True)
    bar = Progress(len(inputs), "synthesizing:", "file", seconds=30) if verbose else None
    failed = 0
    for i, (rel, out_rel) in enumerate(zip(inputs, _output_names(inputs))):
        src = os.path.join(input_path, rel)
        try:
            mel = _read_input(src, vocoder)
            _write(vocoder, mel, os.path.join(output, out_rel), rate, chunk_frames, context)
        except (SynthesisError, OSError, RuntimeError, ValueError) as e:
            failed += 1
            message = one_line(e)  # ours name the file; name it for the others
            echo(f"error: {message if src in message else f'{src}: {message}'} (skipped)",
                 sys.stderr)
        if bar is not None:
            bar.update(i + 1, f"({failed} failed)" if failed else "")
    if bar is not None:
        bar.close(f"synthesized {len(inputs) - failed} of {len(inputs)} files into {output}")
    return 1 if failed else 0


def _define_flags():
    from absl import flags

    fv = new_flags()
    flags.DEFINE_string("model", None, f"Model dir, {shipped_help()}, SavedModel dir or "
                        ".tflite file.",
                        flag_values=fv)
    flags.DEFINE_string("input", None, "wav/flac/ogg, mel .npy [frames, n_mels], or a folder.",
                        flag_values=fv)
    flags.DEFINE_string("output", None, "Output audio file (.wav/.flac/.ogg) or folder.",
                        flag_values=fv)
    flags.DEFINE_enum("which", "best", ["best", "latest"], "For a model dir: the best or the "
                      "latest generator.", flag_values=fv)
    flags.DEFINE_integer("chunk_frames", 0, "Synthesize in chunks of this many frames "
                         "(bounded memory, same output); 0: whole utterance.", flag_values=fv)
    flags.DEFINE_integer("context_frames", -1, "Context frames per side for chunks; "
                         "-1: the receptive field.", flag_values=fv)
    flags.DEFINE_integer("sample_rate", 0, "Output rate for a model without tf_melgan.json.",
                         flag_values=fv)
    flags.DEFINE_integer("verbose", 1, "0: errors only; 1: which generator, progress (a bar "
                         "on a terminal, else a line every 30 s) and what was written.",
                         flag_values=fv)
    flags.DEFINE_boolean("debug", False, DEBUG_HELP, flag_values=fv)
    return fv


def main(argv) -> int:
    """Runs the CLI on argv (argv[0] is the program); returns the exit status. Every error
    is one line on stderr (--debug or TF_MELGAN_DEBUG=1 for tracebacks)."""

    fv = _define_flags()
    status = parse_flags(fv, argv, __doc__, required=("model", "input", "output"))
    if status is not None:
        return status
    debug = debug_requested(fv.debug)
    quiet_tensorflow(debug)
    try:
        return run(fv.model, fv.input, fv.output, fv.which, fv.chunk_frames,
                   fv.context_frames, fv.sample_rate, fv.verbose)
    except KeyboardInterrupt:  # outputs are renamed into place only when complete
        print("error: interrupted (Ctrl-C); files finished so far are kept", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - a CLI reports, it does not dump tracebacks
        if debug:
            raise
        prefix = "" if isinstance(e, (SynthesisError, OSError)) else f"{type(e).__name__}: "
        print(f"error: {prefix}{one_line(e)}", file=sys.stderr)
        return 1


def cli():
    sys.exit(main(sys.argv))


if __name__ == "__main__":
    cli()
