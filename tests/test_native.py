"""The native grouped conv (tf_melgan.native): built here, equal to the pure-TF formulation
in the forward pass and both gradients, and a training step that does not change with it."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_melgan import native
from tf_melgan.discriminator import MultiScaleDiscriminator
from tf_melgan.convs import conv_layers, grouped_conv1d
from tf_melgan.model import MelGAN


@pytest.fixture(scope="module")
def lib():
    lib = native.load()
    assert lib is not None, "the native op did not build (is g++ installed?)"
    return lib


# (batch, frames, C_in, C_out, kernel, stride, groups): the paper's D layers (4 in per group,
# 16 or 4 out), other strides and kernels, lengths that leave a remainder, a single output
# frame, and no output frame at all.
SHAPES = [
    (2, 203, 16, 64, 41, 4, 4),
    (3, 100, 64, 64, 41, 4, 16),
    (2, 77, 32, 32, 5, 2, 8),
    (1, 50, 16, 64, 7, 3, 4),
    (2, 64, 32, 128, 3, 1, 8),
    (2, 41, 16, 64, 41, 4, 4),
    (2, 30, 16, 16, 41, 4, 4),
]


@pytest.mark.parametrize("shape", SHAPES)
def test_native_equals_tf_formulation(lib, shape):
    b, t, cin, cout, k, s, g = shape
    assert native.supports(cin, cout, g)
    rng = np.random.default_rng(0)
    x = tf.constant(rng.standard_normal((b, t, cin)), tf.float32)
    w = tf.constant(rng.standard_normal((k, cin // g, cout)), tf.float32)

    def run(conv):
        with tf.GradientTape() as tape:
            tape.watch([x, w])
            y = conv(x, w, s, g)
            loss = tf.reduce_sum(y * y)  # dy = 2y: a different value at every position
        return [y, *tape.gradient(loss, [x, w])]

    ref, ours = run(grouped_conv1d), run(native.grouped_conv1d)
    for name, a, o in zip(["output", "input gradient", "filter gradient"], ref, ours):
        assert a.shape == o.shape, name
        np.testing.assert_allclose(o.numpy(), a.numpy(), rtol=1e-5,
                                   atol=1e-5 * max(1.0, float(tf.reduce_max(tf.abs(a)))),
                                   err_msg=name)


def test_supports_and_errors(lib):
    assert native.supports(1024, 1024, 256) and native.supports(16, 64, 4)
    assert not native.supports(16, 32, 4)  # 8 out per group
    assert not native.supports(4, 16, 1)   # channels not multiples of 16
    assert not native.supports(16, 64, 4, "bfloat16")
    assert not native.supports(None, 64, 4)  # channels unknown when traced
    x, w = tf.zeros([1, 50, 16]), tf.zeros([5, 4, 32])
    with pytest.raises(tf.errors.InvalidArgumentError, match="unsupported grouping"):
        lib.melgan_grouped_conv1d(x, w, stride=1, groups=4)
    with pytest.raises(tf.errors.InvalidArgumentError, match="in channels per group"):
        lib.melgan_grouped_conv1d(x, tf.zeros([5, 8, 64]), stride=1, groups=4)


def test_build_errors_are_clear_and_leave_nothing(tmp_path):
    with pytest.raises(RuntimeError, match="no C\\+\\+ compiler"):
        native.build(str(tmp_path), compiler="no-such-c++-compiler")
    with pytest.raises(RuntimeError, match="building the native grouped conv failed"):
        native.build(str(tmp_path), compiler="false")  # on PATH, exits 1
    assert os.listdir(tmp_path) == []  # no half-built library left to load


def discriminator(how):
    keras.utils.set_random_seed(1)
    d = MultiScaleDiscriminator(num_scales=2, ndf=16, n_layers=3, max_channels=64)
    d.build()
    d.set_grouped_conv(how)
    return d


@pytest.mark.parametrize("how", ["native", "builtin"])
def test_discriminator_grouped_conv_ways_match(lib, how):
    """The native op and TF's builtin grouped conv give einsum's outputs and gradients."""
    audio = tf.constant(np.random.default_rng(2).uniform(-0.5, 0.5, (2, 4096)), tf.float32)
    outputs, grads = [], []
    for way in ("einsum", how):
        d = discriminator(way)
        fn = tf.function(lambda a, d=d: d(a))
        ops = {op.type for op in fn.get_concrete_function(audio).graph.get_operations()}
        assert ("MelganGroupedConv1D" in ops) == (way == "native")

        # TF's grouped-conv gradient has CPU kernels only under oneDNN, which TF leaves off on
        # CPUs without AVX-512 VNNI / BF16 / AMX; XLA's (what Keras uses on a CPU) run anywhere.
        @tf.function(jit_compile=way == "builtin")
        def forward_and_grads(a, d=d):
            with tf.GradientTape() as tape:
                out = d(a)
                loss = sum(tf.reduce_mean(f * f) for scale in out for f in scale)
            return [f for scale in out for f in scale], tape.gradient(loss, d.trainable_variables)
        out, grad = forward_and_grads(audio)
        outputs.append([f.numpy() for f in out])
        grads.append([g.numpy() for g in grad])
    for a, b in zip(outputs[0] + grads[0], outputs[1] + grads[1]):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-6)


def test_train_step_same_with_native_op_and_under_xla(lib, tiny_config):
    # One step with SGD (Adam's first step is ~lr * sign(g): summation-order noise in
    # near-zero gradients would flip it), native op vs XLA (which must not use it).
    config = tiny_config("discriminator.ndf=16", "discriminator.max_channels=64",
                         "discriminator.n_layers=3")
    rng = np.random.default_rng(4)
    mel = tf.constant(rng.normal(-5, 1, (2, 8, config.audio.n_mels)), tf.float32)
    audio = tf.constant(rng.uniform(-0.5, 0.5, (2, 8 * config.audio.hop_length)), tf.float32)
    deltas = []
    for jit in (False, True):
        keras.utils.set_random_seed(0)
        gan = MelGAN.from_config_dataclass(config)
        gan.compile(keras.optimizers.SGD(0.01), keras.optimizers.SGD(0.01), jit_compile=jit)
        step = tf.function(gan.train_step, jit_compile=jit)
        ops = {op.type for op in step.get_concrete_function((mel, audio)).graph.get_operations()}
        assert ("MelganGroupedConv1D" in ops) == (not jit)
        variables = gan.generator.weights + gan.discriminator.weights
        start = [v.numpy() for v in variables]
        step((mel, audio))
        deltas.append([v.numpy() - s for v, s in zip(variables, start)])
    for a, b in zip(*deltas):
        np.testing.assert_allclose(b, a, rtol=1e-3, atol=3e-3 * np.abs(a).max() + 1e-12)


def test_disabled_native_op_falls_back(lib, monkeypatch):
    monkeypatch.setenv("TF_MELGAN_NATIVE", "0")
    native.load.cache_clear()
    try:
        assert native.load() is None
        d = discriminator("native")  # asks for the op, gets frame + einsum
        fn = tf.function(lambda a: d(a))
        graph = fn.get_concrete_function(tf.TensorSpec([1, 4096])).graph
        assert "MelganGroupedConv1D" not in {op.type for op in graph.get_operations()}
    finally:
        native.load.cache_clear()


@pytest.mark.parametrize("setting, on_gpu, dtype, jit, expected", [
    ("auto", False, "float32", False, "native"),
    ("auto", False, "float32", True, "einsum"),
    ("auto", False, "bfloat16", False, "einsum"),
    ("auto", True, "float32", False, "builtin"),
    ("auto", True, "float16", False, "builtin"),  # mixed_float16 on a GPU: never native
    ("auto", True, "float32", True, "einsum"),
    ("einsum", True, "float16", False, "einsum"),
    ("builtin", False, "float32", False, "builtin"),
    ("native", False, "float32", False, "native"),
])
def test_grouped_conv_choice_by_device_and_dtype(lib, setting, on_gpu, dtype, jit, expected):
    assert native.choose_grouped_conv(setting, on_gpu=on_gpu, compute_dtype=dtype,
                                      jit_compile=jit) == expected


@pytest.mark.parametrize("on_gpu, dtype, jit, why", [
    (True, "float32", False, "a GPU"), (False, "float16", False, "float16"),
    (False, "float32", True, "jit_compile")])
def test_explicit_native_refused_where_it_cannot_run(lib, on_gpu, dtype, jit, why):
    with pytest.raises(ValueError, match=f"grouped_conv=native cannot run with {why}"):
        native.choose_grouped_conv("native", on_gpu=on_gpu, compute_dtype=dtype,
                                   jit_compile=jit)


def test_compile_picks_builtin_on_a_gpu(tiny_config, monkeypatch):
    """With a GPU listed (faked), MelGAN.compile puts D's grouped convs on TF's own op."""
    real = tf.config.list_logical_devices
    monkeypatch.setattr(tf.config, "list_logical_devices",
                        lambda kind=None: ["/GPU:0"] if kind == "GPU" else real(kind))
    gan = MelGAN.from_config_dataclass(tiny_config("discriminator.ndf=16",
                                                   "discriminator.max_channels=64"))
    gan.compile(keras.optimizers.SGD(0.01), keras.optimizers.SGD(0.01))
    assert gan.grouped_conv == "builtin"
    grouped = [getattr(c, "layer", c) for c in conv_layers(gan.discriminator)
               if getattr(c, "layer", c).groups > 1]
    assert grouped and all(c.grouped == "builtin" for c in grouped)


def test_builds_and_loads_with_avx512fp16_forced(tmp_path):
    # -march=native on an Intel CPU with AVX512-FP16 turns it on, and TF's bundled Eigen
    # then fails to compile; forcing the flag reproduces that on any x86-64 g++.
    if native.platform.machine().lower() not in ("x86_64", "amd64"):
        pytest.skip("an x86-64 flag")
    path = native.build(str(tmp_path), extra_flags=["-mavx512fp16"])
    # A fresh interpreter: this one may have registered the ops already from the cache.
    check = ("import sys, numpy as np, tensorflow as tf\n"
             "lib = tf.load_op_library(sys.argv[1])\n"
             "y = lib.melgan_grouped_conv1d(tf.ones([1, 8, 16]), tf.ones([3, 4, 16]), "
             "stride=1, groups=4)\n"
             "assert y.shape == (1, 6, 16) and np.all(y.numpy() == 12.0), y\n")
    proc = subprocess.run([sys.executable, "-c", check, path], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_compiler_errors_keeps_the_error_lines_not_the_first():
    log = ("In file included from a.h:1,\n                 from b.cc:2:\n"
           "PacketMathFP16.h:740: error: expected initializer before '<' token\n"
           "  740 |   foo<\n      |      ^\n"
           "b.cc:9: error: 'bar' was not declared\n")
    assert native.compiler_errors(log) == (
        "PacketMathFP16.h:740: error: expected initializer before '<' token\n"
        "b.cc:9: error: 'bar' was not declared")
    assert native.compiler_errors("ld: cannot find -ltensorflow_framework\n") == \
        "ld: cannot find -ltensorflow_framework"
