"""Training and validation data: audio folders -> tf.data of (log-mel, waveform) batches.

Every random choice of training example i (which clip, which offset, which gain) is a pure
function of (seed, i), and step s always consumes examples s*B ... (s+1)*B - 1. So a run
resumed at step s sees exactly the batches an uninterrupted run would, and any number of
replicas or workers split the same global batches.
"""

from __future__ import annotations

import logging
import os
import re
import time
import zlib

import numpy as np
import soundfile as sf
import tensorflow as tf

from tf_melgan.audio import AudioError, LogMel, load_audio
from tf_melgan.config import Config
from tf_melgan.errors import TfMelganError
from tf_melgan.progress import Progress

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".aiff", ".aif", ".au")
log = logging.getLogger("tf_melgan")


class DataError(TfMelganError, ValueError):
    """No usable training data; the message says where we looked and what was wrong."""


def find_audio_files(path) -> list[str]:
    """Audio files of an LJ Speech folder (`metadata.csv` + `wavs/`) or, otherwise, every
    audio file below `path`, sorted. `path` may be a list of folders / files: their files,
    in the order given (a file found twice is used once)."""
    if isinstance(path, (list, tuple)):
        if not path:
            raise DataError("data.path is an empty list")
        files = [f for p in path for f in find_audio_files(p)]
        return list(dict.fromkeys(files))
    if not path:
        raise DataError("no data path given (set data.path in the config or pass --data)")
    if os.path.isfile(path):
        return [path]
    if not os.path.isdir(path):
        raise DataError(f"data path {path} does not exist")
    metadata = os.path.join(path, "metadata.csv")
    if os.path.isfile(metadata):
        files, missing = [], []
        with open(metadata, encoding="utf-8") as f:
            for line in f:
                clip_id = line.split("|", 1)[0].strip()
                if not clip_id:
                    continue
                found = [os.path.join(path, "wavs", clip_id + ext) for ext in AUDIO_EXTENSIONS]
                found = [p for p in found if os.path.isfile(p)]
                (files if found else missing).append(found[0] if found else clip_id)
        if missing:
            log.warning("%d clips listed in %s have no audio file in wavs/, e.g. %s",
                        len(missing), metadata, ", ".join(missing[:5]))
        if files:
            return files
    files = sorted(
        os.path.join(root, name)
        for root, _, names in os.walk(path) for name in names
        if name.lower().endswith(AUDIO_EXTENSIONS))
    if not files:
        raise DataError(f"no audio files ({', '.join(AUDIO_EXTENSIONS)}) found under {path}")
    return files


def speaker_of(path: str) -> str:
    """A clip's speaker ID: its file name up to the first '-' or '_' (LibriSpeech's
    speaker-chapter-utterance, VCTK's p225_001), else the whole name."""
    name = os.path.splitext(os.path.basename(path))[0]
    return re.split(r"[-_]", name, maxsplit=1)[0]


def split_files(files: list[str], n_validation: int, holdout: str = "clip"):
    """Deterministic split: the n clips whose names hash lowest are held out, or with
    holdout 'speaker' the n speakers whose IDs hash lowest (speaker_of), all their clips.

    Hashing names (not positions) keeps a clip on the same side when files are added.
    With a single clip (or speaker), it serves for both."""
    if holdout == "speaker":
        speakers = sorted({speaker_of(f) for f in files},
                          key=lambda s: (zlib.crc32(s.encode()), s))
        if len(speakers) < 2:
            return list(files), list(files)
        held = set(speakers[:min(n_validation, len(speakers) - 1)])
        return ([f for f in files if speaker_of(f) not in held],
                [f for f in files if speaker_of(f) in held])
    if len(files) < 2:
        return list(files), list(files)
    n = min(n_validation, len(files) - 1)
    ranked = sorted(files, key=lambda p: (zlib.crc32(os.path.basename(p).encode()), p))
    held_out = set(ranked[:n])
    return [f for f in files if f not in held_out], [f for f in ranked[:n]]


class AudioSource:
    """Decoded, resampled, peak-normalised clips by index.

    Files are checked up front: unreadable, empty or silent ones are skipped with a warning
    that names them. When the decoded audio fits under `cache_max_gb` it is all decoded
    once (with a progress bar) and kept in memory; otherwise clips are decoded on access.
    """

    def __init__(self, files, sample_rate, peak=0.95, cache_max_gb=4.0, verbose=True,
                 progress="auto"):
        self.sample_rate, self.peak = sample_rate, peak
        self.files, skipped, total_samples, lengths = [], [], 0, {}
        for path in files:
            try:
                if os.path.getsize(path) == 0:
                    raise AudioError(f"{path}: empty file (0 bytes)")
                info = sf.info(path)
                if info.frames <= 0:
                    raise AudioError(f"{path}: contains no samples")
            except AudioError as e:
                skipped.append(str(e))
                continue
            except Exception as e:  # libsndfile's errors for non-audio / truncated files
                skipped.append(f"{path}: not a readable audio file ({e})")
                continue
            self.files.append(path)
            lengths[path] = round(info.frames * sample_rate / info.samplerate)
            total_samples += lengths[path]
        self.clips = None
        if total_samples * 4 <= cache_max_gb * 2**30:
            bar = Progress(len(self.files), "decoding audio:", "clip", progress, seconds=30,
                           emit=log.info) if verbose else None
            kept, clips = [], []
            for i, path in enumerate(self.files):
                try:
                    clips.append(load_audio(path, sample_rate, peak))
                    kept.append(path)
                except AudioError as e:
                    skipped.append(str(e))
                if bar and (i + 1 == len(self.files) or i % 200 == 0):
                    bar.update(i + 1)
            if bar:
                bar.close(f"decoded {len(kept)} clips ({total_samples / sample_rate:.0f} s of "
                          f"audio) in {time.monotonic() - bar.started:.1f} s")
            self.files, self.clips = kept, clips
            lengths = {path: len(clip) for path, clip in zip(kept, clips)}
        self.lengths = [lengths[path] for path in self.files]  # samples at sample_rate
        for message in skipped:
            log.warning("skipping %s", message)
        if not self.files:
            raise DataError("no usable audio files:\n  " + "\n  ".join(skipped or ["(none given)"]))

    def __len__(self):
        return len(self.files)

    def clip(self, index: int) -> np.ndarray:
        if self.clips is not None:
            return self.clips[index]
        try:
            return load_audio(self.files[index], self.sample_rate, self.peak)
        except AudioError as e:  # decoded lazily: a file that broke after the scan
            log.warning("skipping %s", e)
            return np.zeros(1, np.float32)

    def seconds(self) -> float:
        if self.clips is None:
            return float("nan")
        return sum(len(c) for c in self.clips) / self.sample_rate


def warn_short_clips(source: AudioSource, segment_length: int, shown: int = 5) -> list[str]:
    """Warns about clips shorter than half a training segment: every segment of them is
    mostly zero padding. Returns their paths."""
    short = [(p, n) for p, n in zip(source.files, source.lengths) if 2 * n < segment_length]
    if short:
        rate = source.sample_rate
        names = ", ".join(f"{p} ({n / rate:.3f} s)" for p, n in short[:shown])
        more = f" and {len(short) - shown} more" if len(short) > shown else ""
        log.warning("%d training clip(s) shorter than half a segment (%d samples, %.3f s) "
                    "are padded with more zeros than audio: %s%s", len(short),
                    segment_length // 2, segment_length / 2 / rate, names, more)
    return [p for p, _ in short]


def crop_or_pad(audio: np.ndarray, length: int, offset: int = 0) -> np.ndarray:
    """`length` samples from `offset`, zero-padded at the end when the clip is shorter."""
    out = audio[offset:offset + length]
    return np.pad(out, (0, length - len(out))) if len(out) < length else out


class TrainingExamples:
    """Example i -> a random segment with random gain, a pure function of (seed, i)."""

    def __init__(self, source: AudioSource, segment_length, gain_min, gain_max, seed):
        self.source, self.segment_length = source, segment_length
        self.gain_min, self.gain_max, self.seed = gain_min, gain_max, seed
        self._order = (-1, None)  # (epoch, permutation), swapped as one object: map threads

    def _clip_index(self, i: int) -> int:
        n = len(self.source)
        epoch, order = self._order
        if epoch != i // n:  # one shuffle per pass over the clips
            epoch, order = i // n, np.random.default_rng([self.seed, 0, i // n]).permutation(n)
            self._order = (epoch, order)
        return int(order[i % n])

    def __call__(self, i) -> np.ndarray:
        i = int(i)
        audio = self.source.clip(self._clip_index(i))
        rng = np.random.default_rng([self.seed, 1, i])
        offset = int(rng.integers(0, max(len(audio) - self.segment_length, 0) + 1))
        gain = rng.uniform(self.gain_min, self.gain_max)
        return (crop_or_pad(audio, self.segment_length, offset) * gain).astype(np.float32)


def train_dataset(source: AudioSource, config: Config, start_step: int = 0,
                  input_context: tf.distribute.InputContext | None = None) -> tf.data.Dataset:
    """Infinite (mel, audio) batches from `start_step` on, per replica when `input_context`
    is given (use with `strategy.distribute_datasets_from_function`)."""
    t = config.training
    global_batch = t.batch_size
    pipelines, pipeline = 1, 0
    batch = global_batch
    if input_context is not None:
        pipelines, pipeline = input_context.num_input_pipelines, input_context.input_pipeline_id
        batch = input_context.get_per_replica_batch_size(global_batch)
    if global_batch % pipelines:
        raise DataError(f"training.batch_size {global_batch} does not split over {pipelines} workers")
    per_pipeline = global_batch // pipelines
    examples = TrainingExamples(source, t.segment_length, config.data.gain_min,
                                config.data.gain_max, t.seed)
    log_mel = LogMel(config.audio, dtype="float32")
    parallel = config.data.num_parallel_calls
    parallel = tf.data.AUTOTUNE if parallel < 0 else parallel

    def step_examples(step):  # this pipeline's share of global batch `step`
        first = step * global_batch + pipeline * per_pipeline
        return tf.data.Dataset.range(first, first + per_pipeline)

    def load(i):
        audio = tf.numpy_function(examples, [i], tf.float32, stateful=False)
        return tf.ensure_shape(audio, [t.segment_length])

    ds = tf.data.Dataset.range(start_step, 2**62).flat_map(step_examples)
    ds = ds.map(load, num_parallel_calls=parallel, deterministic=True)
    ds = ds.batch(batch, drop_remainder=True)
    ds = ds.map(lambda audio: (log_mel(audio), audio), num_parallel_calls=parallel)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    return ds.with_options(options).prefetch(tf.data.AUTOTUNE)


def validation_audio(source: AudioSource, length: int) -> np.ndarray:
    """Held-out clips, each its first `length` samples (zero-padded), no gain: [n, length]."""
    return np.stack([crop_or_pad(source.clip(i), length) for i in range(len(source))])


def validation_dataset(audio: np.ndarray, config: Config, batch_size: int = 1) -> tf.data.Dataset:
    """(mel, audio) batches of `batch_size` (the number of replicas) held-out clips."""
    if len(audio) % batch_size:
        # Every replica needs a clip in every batch (an empty share crashes the generator's
        # reflection padding); using each clip batch_size times leaves the mean unchanged.
        audio = np.repeat(audio, batch_size, axis=0)
    log_mel = LogMel(config.audio, dtype="float32")
    ds = tf.data.Dataset.from_tensor_slices(audio).batch(batch_size)
    return ds.map(lambda a: (log_mel(a), a)).cache()
