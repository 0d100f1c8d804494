"""tf_melgan.conv_ops: the dilated conv's written-out gradient against the gradient of
Keras' own path (tf.nn.convolution: SpaceToBatch + an undilated conv), and training a
dilated conv with oneDNN off, where TF's own dilated-conv gradient has no CPU kernel."""

import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tf_melgan.conv_ops import dilated_conv1d

from conftest import ROOT, cli_env


@pytest.mark.parametrize("dilation,length", [(2, 17), (3, 40), (9, 64)])
def test_dilated_conv1d_equals_keras_path_with_gradients(dilation, length):
    rng = np.random.default_rng(dilation)
    x = tf.constant(rng.normal(size=(2, length, 5)), tf.float32)
    kernel = tf.constant(rng.normal(size=(3, 5, 4)), tf.float32)
    upstream = tf.constant(rng.normal(size=(2, length - 2 * dilation, 4)), tf.float32)

    def value_and_grads(conv):
        # unknown batch and length, as in training: the graph the CPU kernel refused
        @tf.function(input_signature=[tf.TensorSpec([None, None, 5]), tf.TensorSpec([3, 5, 4]),
                                      tf.TensorSpec([None, None, 4])])
        def run(x, kernel, upstream):
            with tf.GradientTape() as tape:
                tape.watch([x, kernel])
                y = conv(x, kernel)
            return (y,) + tuple(tape.gradient(y, [x, kernel], output_gradients=upstream))
        return [t.numpy() for t in run(x, kernel, upstream)]

    ours = value_and_grads(lambda x, k: dilated_conv1d(x, k, dilation))
    keras_path = value_and_grads(lambda x, k: tf.nn.convolution(x, k, padding="VALID",
                                                                dilations=dilation))
    for a, b, what in zip(ours, keras_path, ["output", "d_input", "d_kernel"]):
        assert a.shape == b.shape, what
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4, err_msg=what)


TRAIN_WITHOUT_ONEDNN = """
import numpy as np, tensorflow as tf
from tf_melgan.convs import conv1d
layer = conv1d(8, 3, 8, dilation_rate=9)
x = tf.constant(np.random.default_rng(0).normal(size=(2, 100, 8)), tf.float32)
layer(x)
@tf.function
def grads(x):
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.square(layer(x)))
    return tape.gradient(loss, layer.trainable_variables)
print(sum(float(tf.reduce_sum(tf.abs(g))) for g in grads(x)))
"""


def test_dilated_conv_trains_without_onednn():
    # TF turns oneDNN off on some CPUs (one without AVX-512 here); TF_ENABLE_ONEDNN_OPTS=0 makes
    # any x86 CPU that case. The builtin gradient stopped there with "Current CPU
    # implementations do not yet support dilation rates larger than 1".
    env = cli_env(TF_ENABLE_ONEDNN_OPTS="0")
    proc = subprocess.run([sys.executable, "-c", TRAIN_WITHOUT_ONEDNN], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert float(proc.stdout.split()[-1]) > 0
