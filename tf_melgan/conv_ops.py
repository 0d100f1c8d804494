"""Two 1-D convolutions written out, where TF's own ops are slow or missing on a CPU:
the grouped conv (frame + einsum) and the dilated conv's gradient (one matmul per tap)."""

from __future__ import annotations

import tensorflow as tf


def grouped_conv1d(x, kernel, stride, groups):
    """'valid' grouped conv as frame + einsum: [B, T, C_in] * [k, C_in/groups, C_out].

    TF's CPU grouped convolution (which Keras runs through XLA) is much slower than this in
    the backward pass (docs/BENCHMARKS.md), and the discriminator is made of grouped convs.
    """
    k, cin_g, cout = kernel.shape
    batch = tf.shape(x)[0]
    patches = tf.signal.frame(x, k, stride, axis=1)  # [B, T', k, C_in]
    patches = tf.reshape(patches, [batch, -1, k, groups, cin_g])
    w = tf.reshape(kernel, [k, cin_g, groups, cout // groups])
    y = tf.einsum("btkgi,kigo->btgo", patches, w)
    return tf.reshape(y, [batch, -1, cout])


def dilated_conv1d(x, kernel, dilation):
    """'valid' stride-1 conv with a dilation: [B, T, C_in] * [k, C_in, C_out].

    Forward: one Conv2D with dilations, which oneDNN and XNNPACK run directly (Keras' path,
    tf.nn.convolution, wraps it in SpaceToBatch / BatchToSpace). Its gradient is written out
    per tap, y[t] = sum_j x[t + j d] W_j, because TF has CPU gradient kernels for a dilated
    conv only under oneDNN, which it turns on by default only on CPUs with AVX-512 VNNI,
    BF16 or AMX (TF 2.9's release notes; on a Zen 3 EPYC, AVX2 only, training stopped with
    "Current CPU implementations do not yet support dilation rates larger than 1").
    """
    k = kernel.shape[0]

    @tf.custom_gradient
    def conv(x, kernel):
        def grad(dy):
            t_in, t_out = tf.shape(x)[1], tf.shape(dy)[1]
            d_kernel = tf.stack([
                tf.einsum("bti,bto->io", x[:, j * dilation: j * dilation + t_out], dy)
                for j in range(k)])
            d_x = tf.add_n([
                tf.pad(tf.einsum("bto,io->bti", dy, kernel[j]),
                       [[0, 0], [j * dilation, t_in - t_out - j * dilation], [0, 0]])
                for j in range(k)])
            return d_x, d_kernel

        return tf.nn.conv1d(x, kernel, 1, "VALID", dilations=dilation), grad

    return conv(tf.convert_to_tensor(x), tf.convert_to_tensor(kernel))
