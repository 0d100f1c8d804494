"""Receptive field (analytic == measured) and chunked synthesis == whole-utterance synthesis."""

import itertools

import numpy as np
import pytest
import tensorflow as tf

from tf_melgan.config import Config, config_from_dict
from tf_melgan.generator import Generator
from tf_melgan.streaming import (MIN_FRAMES, empirical_receptive_field, first_chunk_latency,
                                 receptive_field, sample_dependencies, stream, stream_all)

N_MELS = 80
TOL = 1e-5


def make_fn(n_mels=N_MELS, ngf=8, ratios=(8, 8, 2, 2), n_residual_layers=3, seed=0):
    """A tiny folded generator behind one tf.function (fast for many small windows)."""
    import keras
    keras.utils.set_random_seed(seed)
    g = Generator(n_mels=n_mels, ngf=ngf, ratios=ratios, n_residual_layers=n_residual_layers)
    g.build((None, None, n_mels))
    g = g.folded()
    fn = tf.function(lambda mel: g(mel), input_signature=[
        tf.TensorSpec([None, None, n_mels], tf.float32)])
    call = lambda mel: fn(np.asarray(mel, np.float32)).numpy()  # noqa: E731
    return g, call


@pytest.fixture(scope="module")
def tiny():
    return make_fn()


def mel_of(frames, n_mels=N_MELS, seed=0):
    # log10-mel-like values, inside the model's range [log10(1e-5), ~1]
    rng = np.random.default_rng(seed)
    return np.clip(rng.normal(-2.0, 1.2, (frames, n_mels)), -5, 1).astype(np.float32)


# ------------------------------------------------------------------ receptive field

def test_receptive_field_of_paper_and_demo_configs():
    paper = receptive_field(Config())  # ratios 8/8/2/2, 3 residual layers
    assert (paper.left, paper.right, paper.frames) == (6, 6, 13)
    assert paper.approx_left == pytest.approx(6.140625)
    demo = receptive_field(config_from_dict({}, ["generator.ngf=8"]))
    assert (demo.left, demo.right) == (6, 6)  # width does not change the field
    assert receptive_field(Generator(ratios=[4, 4], n_residual_layers=2, n_mels=16)).left == 6
    odd = receptive_field({"ratios": [5, 5, 4, 3], "n_residual_layers": 3})
    assert (odd.left, odd.right) == (7, 8)


@pytest.mark.parametrize("ratios,n_res,n_mels", [
    ((8, 8, 2, 2), 3, 80), ((5, 5, 4, 3), 3, 20), ((3, 2), 1, 8)])
def test_receptive_field_analytic_equals_gradient_measurement(ratios, n_res, n_mels):
    """Exact, sample by sample: the input frames with a non-zero gradient are the ones the
    analytic interval propagation gives."""
    g, _ = make_fn(n_mels, 8, ratios, n_res, seed=1)
    analytic = receptive_field(g)
    measured = empirical_receptive_field(g, n_mels, frames=30, probes=[14, 15],
                                         method="gradient")
    assert (measured.left, measured.right) == (analytic.left, analytic.right)
    hop, frames, j = int(np.prod(ratios)), 26, 13
    deps = {n: sample_dependencies(ratios, n_res, n) for n in range(j * hop - 1, (j + 1) * hop + 1)}
    # the samples where the interval changes, and their neighbours
    samples = sorted({n for n in range(j * hop, (j + 1) * hop)
                      for m in (n - 1, n + 1) if deps[m] != deps[n]} | {j * hop, (j + 1) * hop - 1})
    x = tf.constant(np.repeat(mel_of(frames, n_mels)[None], len(samples), axis=0))
    with tf.GradientTape() as tape:
        tape.watch(x)
        out = g(x)
        picked = tf.gather(out, samples, axis=1, batch_dims=0)
        loss = tf.reduce_sum(tf.linalg.diag_part(picked))
    used = np.abs(tape.gradient(loss, x).numpy()).sum(axis=2)
    for b, n in enumerate(samples):
        frames_used = np.nonzero(used[b])[0]
        assert (frames_used[0], frames_used[-1]) == deps[n], n
        assert np.all(used[b, frames_used[0]:frames_used[-1] + 1] > 0)


def test_receptive_field_analytic_equals_perturbation():
    """Perturbing one mel frame changes exactly the output frames of the analytic field."""
    g, fn = make_fn(N_MELS, 8, seed=2)
    measured = empirical_receptive_field(fn, N_MELS, frames=34, probes=[15, 16, 17])
    analytic = receptive_field(g)
    assert (measured.left, measured.right) == (analytic.left, analytic.right) == (6, 6)


# ------------------------------------------------------------------ streaming

@pytest.mark.parametrize("frames,chunk", [(37, 1), (37, 3), (37, 7), (50, 8), (37, 16),
                                          (50, 64)])
def test_stream_equals_whole_utterance(tiny, frames, chunk):
    g, fn = tiny
    mel = mel_of(frames, seed=frames)
    whole = fn(mel[None])[0]
    blocks = list(stream(fn, mel, chunk, receptive_field(g).context))
    assert [b.shape[0] for b in blocks[:-1]] == [chunk * 256] * (len(blocks) - 1)
    assert len(blocks) == -(-frames // chunk)
    out = np.concatenate(blocks)
    assert out.shape == whole.shape
    # Equal everywhere, the true edges included (windows are cut at the true edges).
    assert np.max(np.abs(out - whole)) <= TOL


def test_stream_default_context_layouts_and_iterables(tiny):
    g, fn = tiny
    mel = mel_of(29, seed=3)
    whole = fn(mel[None])[0]
    # context from the Generator itself; [1, frames, n_mels]; a memmap-like slice source
    out = stream_all(_WithField(fn, receptive_field(g)), mel[None], 5)
    assert np.max(np.abs(out - whole)) <= TOL
    # an iterable of uneven blocks (a live mel source), with asymmetric context
    pieces = iter(np.split(mel, [2, 3, 11, 20, 21]))
    out = stream_all(fn, pieces, 4, (6, 6))
    assert np.max(np.abs(out - whole)) <= TOL
    # the smallest windows (no context, 1-frame chunks) are widened to 4 frames
    out = stream_all(fn, iter(np.split(mel, 29)), 1, 0)
    assert out.shape == whole.shape and np.max(np.abs(out[:256] - whole[:256])) > 0


class _WithField:
    def __init__(self, fn, field):
        self.fn, self.receptive_field = fn, field

    def __call__(self, mel):
        return self.fn(mel)


def test_stream_short_utterances(tiny):
    _, fn = tiny
    for frames in (MIN_FRAMES, 5, 9):
        mel = mel_of(frames, seed=frames)
        whole = fn(mel[None])[0]
        for chunk in (1, 2, 100):
            assert np.max(np.abs(stream_all(fn, mel, chunk, 6) - whole)) <= TOL
    with pytest.raises(ValueError, match="at least 4"):
        stream_all(fn, mel_of(3), 2, 6)


def test_stream_is_lazy_and_bounded(tiny):
    """An endless mel source: blocks come out as soon as their context is in, and every
    window stays within chunk + 2 * context frames."""
    _, fn = tiny
    windows = []

    def spy(mel):
        windows.append(mel.shape[1])
        return fn(mel)

    endless = (mel_of(3, seed=i) for i in itertools.count())
    blocks = list(itertools.islice(stream(spy, endless, 4, 6), 25))
    assert len(blocks) == 25 and all(b.shape[0] == 4 * 256 for b in blocks)
    assert max(windows) <= 4 + 2 * 6


def test_too_little_context_changes_the_output(tiny):
    """Guards the equality test itself: without context, the seams differ."""
    _, fn = tiny
    mel = mel_of(40, seed=5)
    whole = fn(mel[None])[0]
    assert np.max(np.abs(stream_all(fn, mel, 8, 0) - whole)) > 1e-4
    assert np.max(np.abs(stream_all(fn, mel, 8, 5) - whole)) > 0  # one frame short


def test_stream_drives_a_fixed_shape_model(tiny):
    g, fn = tiny
    field = receptive_field(g)
    chunk = 5
    window = chunk + 2 * field.context
    calls = []

    def fixed(mel):  # a model with a static input [1, window, n_mels]
        assert mel.shape == (1, window, N_MELS), mel.shape
        calls.append(1)
        return fn(mel)

    for frames in (window, 41, 44):  # whole windows shift to end at the true end: exact
        mel = mel_of(frames, seed=frames)
        out = stream_all(fixed, mel, chunk, field.context, fixed_frames=window)
        assert np.max(np.abs(out - fn(mel[None])[0])) <= TOL
        pieces = iter(np.array_split(mel, 9))  # a live source: the end comes unannounced
        out = stream_all(fixed, pieces, chunk, field.context, fixed_frames=window)
        assert np.max(np.abs(out - fn(mel[None])[0])) <= TOL
    # Shorter than one window: padded; only the last `right` frames can differ.
    mel = mel_of(11, seed=11)
    whole = fn(mel[None])[0]
    out = stream_all(fixed, mel, chunk, field.context, fixed_frames=window)
    assert out.shape == whole.shape
    exact = (11 - field.right) * 256
    assert np.max(np.abs(out[:exact] - whole[:exact])) <= TOL
    with pytest.raises(ValueError, match="cannot hold"):
        next(stream(fixed, mel, chunk, field.context, fixed_frames=window - 1))


def test_stream_rejects_bad_arguments(tiny):
    _, fn = tiny
    with pytest.raises(ValueError, match="chunk_frames"):
        next(stream(fn, mel_of(10), 0, 6))
    with pytest.raises(ValueError, match="context_frames is required"):
        next(stream(fn, mel_of(10), 4))
    with pytest.raises(ValueError, match="frames, n_mels"):
        next(stream(fn, np.zeros((2, 10, N_MELS), np.float32), 4, 6))


def test_first_chunk_latency(tiny):
    """Against a generator whose cost is known: 50 ms on its first call (tracing), 10 ms
    after; the figures are those times and the lookahead the receptive field implies."""
    import time
    g, _ = tiny
    calls = []

    def timed(mel):
        time.sleep(0.05 if not calls else 0.01)
        calls.append(mel.shape[1])
        return np.zeros((1, mel.shape[1] * 256), np.float32)

    field = receptive_field(g).context
    stats = first_chunk_latency(timed, N_MELS, 8, field, hop_length=256, sample_rate=22050,
                                repeats=3)
    assert len(calls) == 4 and all(c == 8 + 6 for c in calls)  # chunk + right context
    assert stats["lookahead_frames"] == 8 + 6
    assert stats["lookahead"] == pytest.approx(14 * 256 / 22050)
    assert 0.05 <= stats["cold"] < 0.05 + 1.0
    assert 0.01 <= stats["compute"] < 0.05  # the warm calls' median, not the cold one
    assert stats["latency"] == pytest.approx(stats["lookahead"] + stats["compute"])
    assert stats["block"] == pytest.approx(8 * 256 / 22050)
    assert stats["real_time_factor"] == pytest.approx(stats["compute"] / stats["block"])


def test_nearest_upsampling_generator_streams_like_whole_utterance():
    """generator.upsampling='nearest': the receptive field derived for it is exact (a
    streamed output equals the whole-utterance one) and bounds every sample's inputs."""
    import keras
    from tf_melgan.generator import Generator
    keras.utils.set_random_seed(3)
    g = Generator(ngf=4, ratios=[4, 2, 2], n_residual_layers=2, upsampling="nearest")
    g.build((None, None, 80))
    field = receptive_field(g)
    mel = np.random.default_rng(0).normal(-4, 1, (1, 60, 80)).astype(np.float32)
    whole = np.asarray(g(mel))[0]
    # perturbing a frame just outside the field of frame 30 leaves frame 30's samples alone
    hop = g.hop_length
    for far in (30 - field.left - 1, 30 + field.right + 1):
        moved = mel.copy()
        moved[0, far] += 3.0
        out = np.asarray(g(moved))[0]
        np.testing.assert_allclose(out[30 * hop:31 * hop], whole[30 * hop:31 * hop], atol=1e-6)
    assert field.left > receptive_field(Generator(ngf=4, ratios=[4, 2, 2],
                                                  n_residual_layers=2)).left - 2
    streamed = stream_all(lambda m: np.asarray(g(m)), mel[0], 16, (field.left, field.right))
    np.testing.assert_allclose(streamed, whole, atol=1e-5)
