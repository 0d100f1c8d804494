"""Chunked (streaming) synthesis whose stitched output equals the whole-utterance output.

The generator is a stack of convolutions, so an output sample depends on a bounded window
of mel frames, its *receptive field*. `receptive_field` derives that window exactly from
the architecture; `empirical_receptive_field` measures it (perturbing one input frame, or
by gradients);
`stream` cuts a mel into chunks, gives each chunk `left` frames of context before it and
`right` frames after it, runs the model on the window and keeps the chunk's own samples.

Edges. The whole-utterance model reflection-pads its feature maps at the utterance's two
ends. A window that reaches a true end is cut exactly there (not padded), so the model sees
the same end as it does for the whole utterance, and the stitched audio equals the
whole-utterance audio everywhere, ends included (to float rounding, ~1e-7). A window edge
inside the utterance is at least one receptive field away from the samples kept, so its
padding never reaches them. A fixed-shape model (static [1, W, n_mels]) gets every window
shifted to lie inside the utterance (the last one ends at the true end); only an utterance
shorter than W needs padding, and then the last `right` frames differ from the
whole-utterance output (the model sees padded frames instead of its own edge reflection).
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Callable, Iterator, Optional, Sequence, Union

import numpy as np

# The fewest frames of a model that does not say (`min_frames`): the MelGAN generator's
# pad_pre = ReflectionPad(3) needs more than 3 (TF's REFLECT requires pad < size).
MIN_FRAMES = 4

# Fixed parts of the architecture (see generator.py): the pre and post convs are
# ReflectionPad(3) + Conv(k7); residual block j has a k3 conv with dilation 3^j.
_PRE_REACH = 3
_POST_REACH = 3


@dataclasses.dataclass(frozen=True)
class ReceptiveField:
    """Frames of mel an output frame depends on: [f - left, f + right] for output frame f
    (every sample of it). `approx_*` is the continuous estimate: the sum over layers of
    each layer's one-sided reach divided by the upsampling before it (in frames)."""

    left: int
    right: int
    approx_left: float
    approx_right: float

    @property
    def frames(self) -> int:
        return self.left + self.right + 1

    @property
    def context(self) -> int:
        """Symmetric context that covers both sides."""
        return max(self.left, self.right)


def _architecture(spec):
    """(ratios, n_residual_layers, upsampling) from a Config, GeneratorConfig, Generator or
    dict."""
    if hasattr(spec, "generator") and not callable(spec):  # a Config
        spec = spec.generator
    if isinstance(spec, dict):
        spec = spec.get("generator", spec)
        return ([int(r) for r in spec["ratios"]], int(spec["n_residual_layers"]),
                spec.get("upsampling", "transposed"))
    if hasattr(spec, "ratios") and hasattr(spec, "n_residual_layers"):
        return ([int(r) for r in spec.ratios], int(spec.n_residual_layers),
                getattr(spec, "upsampling", "transposed"))
    raise TypeError(f"cannot read the generator architecture from {type(spec).__name__}")


def _ceil_div(a: int, b: int) -> int:
    return -((-a) // b)


def sample_dependencies(ratios: Sequence[int], n_residual_layers: int, sample: int,
                        upsampling: str = "transposed"):
    """Input frame interval [lo, hi] that output sample `sample` depends on, on an
    unbounded signal (no edges): back-propagates the index interval layer by layer."""
    res_reach = (3 ** n_residual_layers - 1) // 2  # dilations 1 + 3 + ... + 3^(n-1)
    lo = hi = sample
    lo, hi = lo - _POST_REACH, hi + _POST_REACH
    for r in reversed(ratios):
        lo, hi = lo - res_reach, hi + res_reach
        if upsampling == "nearest":  # Conv(k 2r+1, padded r) on input i repeated r times
            lo, hi = (lo - r) // r, (hi + r) // r
            continue
        # ConvTranspose(kernel 2r, stride r), cropped from start = r//2 + r%2: cropped
        # output m is full output t = m + start = i * r + k, 0 <= k < 2r.
        start = r // 2 + r % 2
        lo, hi = _ceil_div(lo + start - 2 * r + 1, r), (hi + start) // r
    return lo - _PRE_REACH, hi + _PRE_REACH


def receptive_field(spec) -> ReceptiveField:
    """The generator's receptive field in mel frames, derived from its architecture
    (a Config, GeneratorConfig, Generator or the 'generator' dict of an export's json)."""
    ratios, n_res, upsampling = _architecture(spec)
    hop = math.prod(ratios)
    left = right = 0
    for n in range(hop):  # every sample position within output frame 0
        lo, hi = sample_dependencies(ratios, n_res, n, upsampling)
        left, right = max(left, -lo), max(right, hi)
    # Continuous estimate: each layer's one-sided reach in its own samples, divided by
    # the samples per frame at that layer.
    res_reach = (3 ** n_res - 1) // 2
    approx, up = float(_PRE_REACH), 1
    for r in ratios:
        approx += 1 / up  # a transposed-conv output mixes 2 neighbouring inputs
        up *= r
        approx += res_reach / up
    approx += _POST_REACH / up
    return ReceptiveField(left, right, approx, approx)


def _as_audio(output) -> np.ndarray:
    if isinstance(output, dict):
        output = output["audio"]
    return np.asarray(output, dtype=np.float32)


def empirical_receptive_field(generator_fn: Callable, n_mels: int, frames: int = 48,
                              probes: Optional[Sequence[int]] = None, seed: int = 0,
                              method: str = "perturb") -> ReceptiveField:
    """Measures the receptive field in frames.

    method 'perturb': adds large noise to one input frame j at a time (a batch of copies)
    and finds which output frames change at all: [j - right, j + left]. Any callable works.
    The outermost dependencies are weak (products of many small weights), so in float32 a
    frame reached by only a sample or two can go unseen; with the 8/8/2/2 generators the
    outermost frames are reached by ~100 samples and it measures the exact field.
    method 'gradient': the input frames with a non-zero gradient of output frame j
    (weighted randomly): exact, as no dependence is too small for a gradient to show;
    `generator_fn` must be differentiable with TensorFlow (a Keras Generator).
    Probes must be a receptive field away from both ends (default: the middle)."""
    rng = np.random.default_rng(seed)
    mel = np.clip(rng.normal(-2.0, 1.2, size=(1, frames, n_mels)), -5, 1).astype(np.float32)
    probes = list(probes) if probes is not None else [frames // 2, frames // 2 + 1]
    left = right = 0
    if method == "gradient":
        import tensorflow as tf

        x = tf.constant(np.repeat(mel, len(probes), axis=0))
        with tf.GradientTape() as tape:
            tape.watch(x)
            out = generator_fn(x)
            out = out["audio"] if isinstance(out, dict) else out
            hop = int(out.shape[1]) // frames
            mask = np.zeros(out.shape, np.float32)
            for b, j in enumerate(probes):
                mask[b, j * hop:(j + 1) * hop] = rng.normal(size=hop)
            loss = tf.reduce_sum(tf.cast(out, tf.float32) * mask)
        grad = np.abs(tape.gradient(loss, x).numpy()).sum(axis=2)
        for b, j in enumerate(probes):
            used = np.nonzero(grad[b])[0]
            if used[0] == 0 or used[-1] == frames - 1:
                raise ValueError(f"probe frame {j} is too close to an edge of {frames} frames")
            left, right = max(left, j - used[0]), max(right, used[-1] - j)
        return ReceptiveField(int(left), int(right), float(left), float(right))
    if method != "perturb":
        raise ValueError(f"method must be 'perturb' or 'gradient', got {method!r}")
    batch = np.repeat(mel, 2 * len(probes) + 1, axis=0)
    for b, j in enumerate(probes):
        noise = rng.normal(0.0, 20.0, size=n_mels).astype(np.float32)
        batch[2 * b + 1, j] += noise
        batch[2 * b + 2, j] -= noise
    # One call per copy, so that every copy runs the same kernels: batched, on a CPU without
    # oneDNN (docs/BENCHMARKS.md, the Zen 3 machine), frames far from the probe came out
    # different too, and the field read as unbounded.
    out = np.concatenate([_as_audio(generator_fn(batch[b:b + 1])) for b in range(len(batch))])
    hop = out.shape[1] // frames
    for b, j in enumerate(probes):
        changed = np.nonzero((out[2 * b + 1] != out[0]) | (out[2 * b + 2] != out[0]))[0]
        if changed.size == 0:
            raise RuntimeError(f"perturbing frame {j} changed nothing")
        first, last = changed[0] // hop, changed[-1] // hop
        if first == 0 or last == frames - 1:
            raise ValueError(f"probe frame {j} is too close to an edge of {frames} frames")
        right, left = max(right, j - first), max(left, last - j)
    return ReceptiveField(int(left), int(right), float(left), float(right))


def min_frames_of(generator_fn) -> int:
    """The fewest mel frames a model takes: its own `min_frames`, else MIN_FRAMES."""
    return int(getattr(generator_fn, "min_frames", None) or MIN_FRAMES)


def _context(generator_fn, context_frames):
    """(left, right) context frames: given, or the receptive field of the model."""
    if context_frames is None:
        field = getattr(generator_fn, "receptive_field", None)
        if field is None and hasattr(generator_fn, "ratios"):
            field = receptive_field(generator_fn)
        if field is None:
            raise ValueError("context_frames is required: cannot read the receptive field "
                             "of this generator_fn")
        return field.left, field.right
    if isinstance(context_frames, (tuple, list)):
        left, right = (int(c) for c in context_frames)
    else:
        left = right = int(context_frames)
    if left < 0 or right < 0:
        raise ValueError(f"context_frames must be >= 0, got {context_frames}")
    return left, right


class _MelSource:
    """Random access to a mel given whole ([frames, n_mels], [1, frames, n_mels]; NumPy
    arrays and memmaps are sliced, not copied) or as an iterable of [frames_i, n_mels]
    blocks, keeping only the frames still needed (bounded memory)."""

    def __init__(self, mel):
        self._array = None
        self._blocks: Optional[Iterator] = None
        if isinstance(mel, np.ndarray) or hasattr(mel, "shape"):
            array = mel if isinstance(mel, np.ndarray) else np.asarray(mel)
            if array.ndim == 3 and array.shape[0] == 1:
                array = array[0]
            if array.ndim != 2:
                raise ValueError(f"mel must be [frames, n_mels] or [1, frames, n_mels], "
                                 f"got shape {tuple(np.shape(mel))}")
            self._array = array
            self.n_mels = array.shape[1]
            self.known = array.shape[0]
            self.total: Optional[int] = self.known
        else:
            self._blocks = iter(mel)
            self._buffer = np.zeros((0, 0), np.float32)
            self._start = 0  # absolute index of _buffer[0]
            self.n_mels = None
            self.known = 0
            self.total = None

    def fill(self, needed: int) -> None:
        """Reads blocks until `needed` frames are known or the stream ends."""
        while self.total is None and self.known < needed:
            try:
                block = np.asarray(next(self._blocks), dtype=np.float32)
            except StopIteration:
                self.total = self.known
                break
            if block.ndim == 3 and block.shape[0] == 1:
                block = block[0]
            if block.ndim != 2 or (self.n_mels is not None and block.shape[1] != self.n_mels):
                raise ValueError(f"mel blocks must be [frames, n_mels], got {block.shape}")
            if self.n_mels is None:
                self.n_mels = block.shape[1]
                self._buffer = np.zeros((0, self.n_mels), np.float32)
            self._buffer = np.concatenate([self._buffer, block])
            self.known += block.shape[0]

    def get(self, start: int, stop: int) -> np.ndarray:
        if self._array is not None:
            return np.asarray(self._array[start:stop], dtype=np.float32)
        return self._buffer[start - self._start:stop - self._start]

    def release(self, before: int) -> None:
        """Forgets frames before absolute index `before`."""
        if self._array is None and before > self._start:
            drop = min(before - self._start, self._buffer.shape[0])
            self._buffer = self._buffer[drop:]
            self._start += drop


def stream(generator_fn: Callable, mel, chunk_frames: int,
           context_frames: Union[None, int, Sequence[int]] = None, *,
           fixed_frames: Optional[int] = None) -> Iterator[np.ndarray]:
    """Yields the audio of `mel` in blocks of `chunk_frames * hop` samples (the last one
    shorter); concatenated they equal `generator_fn(mel)` (see the module doc for edges).

    generator_fn: maps float32 [1, frames, n_mels] to [1, frames * hop] audio (a Keras
      Generator, a `synthesize.Vocoder`, or any callable; a dict output uses 'audio').
    mel: [frames, n_mels] or [1, frames, n_mels] array (a memmap is read chunk by chunk),
      or an iterable of [frames_i, n_mels] blocks (e.g. from a streaming acoustic model).
    context_frames: frames of context on each side, or (left, right); default: the
      receptive field of generator_fn (it must be a Generator or have `.receptive_field`).
      Less than the receptive field makes the chunk seams audible.
    fixed_frames: for a model with a static input [1, W, n_mels]: every window is exactly
      W frames (W >= chunk_frames + left + right); default: `generator_fn.fixed_frames`
      if it has one, else windows of any size.
    Memory stays bounded by the window, whatever the length of `mel`.
    """
    chunk_frames = int(chunk_frames)
    if chunk_frames < 1:
        raise ValueError(f"chunk_frames must be >= 1, got {chunk_frames}")
    left, right = _context(generator_fn, context_frames)
    least = min_frames_of(generator_fn)
    if fixed_frames is None:
        fixed_frames = getattr(generator_fn, "fixed_frames", None)
    if fixed_frames is not None and fixed_frames < chunk_frames + left + right:
        raise ValueError(f"a fixed window of {fixed_frames} frames cannot hold a chunk of "
                         f"{chunk_frames} plus {left} + {right} context frames")
    source = _MelSource(mel)
    hop = None
    start = 0
    while True:
        stop = start + chunk_frames
        if fixed_frames is None:
            source.fill(max(stop + right, least))
        else:
            source.fill(max(start - left, 0) + fixed_frames)
        if source.total is not None and start >= source.total:
            if start == 0:
                raise ValueError("mel has no frames")
            return
        if source.total is not None and source.total < least:
            raise ValueError(f"mel has {source.total} frames; the generator needs at least "
                             f"{least}")
        end = source.known if source.total is None else source.total  # frames available
        stop = min(stop, end)
        lo = max(start - left, 0)
        if fixed_frames is None:
            hi = min(stop + right, end)
            if hi - lo < least:  # widen (more context never hurts)
                lo = max(hi - least, 0)
                hi = min(lo + least, end)
            window = source.get(lo, hi)
        else:
            if source.total is not None:
                lo = max(min(lo, source.total - fixed_frames), 0)
            window = source.get(lo, lo + fixed_frames)
            if window.shape[0] < fixed_frames:  # utterance shorter than one window
                window = _pad_frames(window, fixed_frames)
        audio = _as_audio(generator_fn(window[None])).reshape(-1)
        if hop is None:
            hop = audio.shape[0] // window.shape[0]
        yield audio[(start - lo) * hop:(stop - lo) * hop]
        start = stop
        # Keep what a later window can still reach: its context (widened to min_frames),
        # and for a fixed window, the last W frames (the final window ends at the end).
        keep = start - max(left, least)
        if fixed_frames is not None:
            keep = min(keep, source.known - fixed_frames)
        source.release(keep)


def _pad_frames(window: np.ndarray, frames: int) -> np.ndarray:
    """Pads a mel window at its end to `frames` by reflection (what the model's first pad
    does), repeating the reflection when the window is short."""
    while window.shape[0] < frames:
        extra = min(frames - window.shape[0], window.shape[0] - 1)
        if extra <= 0:
            window = np.concatenate([window, window[-1:]])
            continue
        window = np.concatenate([window, window[-2:-2 - extra:-1]])
    return window


def stream_all(generator_fn: Callable, mel, chunk_frames: int, context_frames=None,
               **kwargs) -> np.ndarray:
    """`stream` concatenated into one array."""
    blocks = list(stream(generator_fn, mel, chunk_frames, context_frames, **kwargs))
    return np.concatenate(blocks) if blocks else np.zeros(0, np.float32)


def first_chunk_latency(generator_fn: Callable, n_mels: int, chunk_frames: int,
                        context_frames=None, *, hop_length: int, sample_rate: int,
                        fixed_frames: Optional[int] = None, repeats: int = 5) -> dict:
    """Measures how long streaming takes to emit its first audio block.

    Returns seconds: 'cold' (first call, tracing and allocation included), 'compute'
    (median of `repeats` warm calls), 'lookahead' (the mel that must exist before the
    first block can be computed: chunk + right context frames, as audio time),
    'latency' = lookahead + compute (for a live mel source; with a whole mel at hand the
    latency is 'compute'), 'block' (audio per chunk) and 'real_time_factor' (compute /
    block; < 1 keeps up with real time)."""
    left, right = _context(generator_fn, context_frames)
    if fixed_frames is None:
        fixed_frames = getattr(generator_fn, "fixed_frames", None)
    frames = max(chunk_frames + right, min_frames_of(generator_fn), fixed_frames or 0)
    mel = np.random.default_rng(0).normal(-2.0, 1.5, (frames, n_mels)).astype(np.float32)
    times = []
    for _ in range(repeats + 1):
        t0 = time.perf_counter()
        next(stream(generator_fn, mel, chunk_frames, (left, right), fixed_frames=fixed_frames))
        times.append(time.perf_counter() - t0)
    compute = float(np.median(times[1:])) if repeats else times[0]
    lookahead = (chunk_frames + right) * hop_length / sample_rate
    block = chunk_frames * hop_length / sample_rate
    return {"cold": times[0], "compute": compute, "lookahead": lookahead,
            "latency": lookahead + compute, "block": block,
            "real_time_factor": compute / block, "lookahead_frames": chunk_frames + right}
