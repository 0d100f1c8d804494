"""The discriminator's grouped convolution as a native TensorFlow op (training speed).

MelGAN's discriminator is mostly grouped strided convs (kernel 41, 4 input channels per
group). On CPU neither TF (its grouped-conv gradients) nor XLA (framing + batched matmul)
runs them near the machine's FMA rate; `csrc/grouped_conv1d.cc` does, for the forward
pass and both gradients. It is compiled with the system's g++ against the installed
TensorFlow on first use and cached (`$TF_MELGAN_CACHE`, default ~/.cache/tf_melgan), keyed
by the source, the TF version and the CPU. Without a compiler, or with TF_MELGAN_NATIVE=0,
`load()` returns None and callers use the pure-TF formulation (same numbers, slower).
The op has no XLA kernel: it is for graphs that are not jit-compiled.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile

import tensorflow as tf

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "csrc", "grouped_conv1d.cc")
log = logging.getLogger(__name__)


def _cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            return next((line for line in f if line.startswith("flags")), "")
    except OSError:
        return platform.processor()


def _cache_dir():
    """$TF_MELGAN_CACHE, else ~/.cache/tf_melgan, else (read-only home) a per-user temp dir."""
    if os.environ.get("TF_MELGAN_CACHE"):
        candidates = [os.environ["TF_MELGAN_CACHE"]]
    else:
        candidates = [os.path.join(os.path.expanduser("~"), ".cache", "tf_melgan"),
                      os.path.join(tempfile.gettempdir(), f"tf_melgan-{os.getuid()}")]
    for d in candidates:
        try:
            os.makedirs(d, exist_ok=True)
        except OSError:
            continue
        if os.access(d, os.W_OK):
            return d
    raise RuntimeError(f"no writable cache directory for the native op ({candidates})")


# ISA extensions that -march=native turns on where TensorFlow's bundled Eigen does not
# compile with them: AVX512-FP16 (Intel Sapphire Rapids and later) stops the build in
# Eigen's PacketMathFP16.h. The op does not use half precision, so nothing is lost.
X86_MASK = ("-mno-avx512fp16",)


def _isa_flags(extra_flags=()):
    """-march=native, then `extra_flags`, then (on x86) X86_MASK, which wins over both."""
    x86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")
    return ["-march=native", *extra_flags, *(X86_MASK if x86 else ())]


def compiler_errors(stderr: str, keep: int = 6) -> str:
    """The lines of a g++ log that say what failed (its 'error' lines, the last `keep`),
    else its last lines: the first line is usually only 'In file included from'."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower()]
    return "\n".join((errors or lines)[-keep:])


def build(output_dir=None, compiler=None, extra_flags=()):
    """Compiles the op library (if not cached) and returns the path of the .so.

    `extra_flags` go after -march=native (tests force ISA extensions with them). Raises
    RuntimeError with the compiler's error lines when it cannot be built.
    """
    compiler = compiler or os.environ.get("CXX", "g++")
    if shutil.which(compiler) is None:
        raise RuntimeError(f"no C++ compiler '{compiler}' on PATH")
    flags = _isa_flags(extra_flags) + tf.sysconfig.get_compile_flags() + \
        tf.sysconfig.get_link_flags()
    with open(SOURCE, "rb") as f:
        source = f.read()
    key = hashlib.sha256(b"\0".join([source, tf.__version__.encode(), " ".join(flags).encode(),
                                     _cpu_flags().encode(), compiler.encode()])).hexdigest()[:16]
    output_dir = output_dir or _cache_dir()
    path = os.path.join(output_dir, f"grouped_conv1d-{key}.so")
    if os.path.exists(path):
        return path
    os.makedirs(output_dir, exist_ok=True)
    # Built under a temporary name and renamed: concurrent workers never load half a file.
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=output_dir)
    os.close(fd)
    cmd = [compiler, "-shared", "-fPIC", "-O3", "-w", SOURCE, "-o", tmp, *flags]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        os.unlink(tmp)
        raise RuntimeError("building the native grouped conv failed: "
                           + (compiler_errors(proc.stderr) or f"{compiler} exited "
                              f"{proc.returncode}"))
    os.replace(tmp, path)
    return path


@functools.cache
def load():
    """The loaded op library, or None when disabled (TF_MELGAN_NATIVE=0) or not buildable
    (logged once as a warning; the pure-TF path is then used)."""
    if os.environ.get("TF_MELGAN_NATIVE", "1") == "0":
        return None
    try:
        return tf.load_op_library(build())
    except (RuntimeError, OSError, tf.errors.NotFoundError) as e:
        log.warning("tf_melgan: native grouped conv unavailable, using the slower TF "
                    "formulation (%s)", e)
        return None


def supports(in_channels, out_channels, groups, dtype="float32"):
    """Whether the op handles this grouping: float32, channels multiples of 16, and either
    a multiple of 16 outputs per group or as many outputs as inputs per group (dividing 16)."""
    if (in_channels is None or tf.as_dtype(dtype) != tf.float32 or in_channels % groups
            or out_channels % groups):
        return False
    cig, cog = in_channels // groups, out_channels // groups
    return (in_channels % 16 == 0 and out_channels % 16 == 0 and 16 % cig == 0
            and (cog % 16 == 0 or (cig == cog and 16 % cog == 0)))


GROUPED_CONV_CHOICES = ("auto", "native", "einsum", "builtin")


def choose_grouped_conv(setting="auto", *, on_gpu=False, compute_dtype="float32",
                        jit_compile=False):
    """How the discriminator's grouped convs run (config discriminator.grouped_conv):

    - 'native': this module's op (CPU kernels, float32 only, no XLA kernel);
    - 'einsum': frame + einsum (conv_ops.grouped_conv1d), any device and dtype, fast under XLA;
    - 'builtin': TF's own grouped conv, which cuDNN runs natively on GPUs (on a CPU its
      gradients are slow under oneDNN and missing without it);
    - 'auto': einsum under XLA, builtin on a GPU, native on CPU in float32 when it builds,
      else einsum. Raises ValueError for an explicit choice that cannot run.
    """
    if setting not in GROUPED_CONV_CHOICES:
        raise ValueError(f"grouped_conv must be one of {GROUPED_CONV_CHOICES}, got '{setting}'")
    float32 = tf.as_dtype(compute_dtype) == tf.float32
    if setting == "auto":
        if jit_compile:
            return "einsum"
        if on_gpu:
            return "builtin"
        return "native" if float32 and load() is not None else "einsum"
    if setting == "native":
        why = ("jit_compile (the op has no XLA kernel)" if jit_compile else
               "a GPU (the op has CPU kernels only)" if on_gpu else
               f"{compute_dtype} (the op is float32 only)" if not float32 else
               "no native op (see the warning above)" if load() is None else None)
        if why:
            raise ValueError(f"discriminator.grouped_conv=native cannot run with {why}")
    return setting


def grouped_conv1d(x, kernel, stride, groups):
    """'valid' grouped conv [B, T, C_in] * [k, C_in/groups, C_out] -> [B, T', C_out] with
    the native op and its gradients. `load()` must not be None."""
    lib = load()
    kernel_size = kernel.shape[0]

    @tf.custom_gradient
    def conv(x, kernel):
        y = lib.melgan_grouped_conv1d(x, kernel, stride=stride, groups=groups)

        def grad(dy):
            dx = lib.melgan_grouped_conv1d_backprop_input(x, kernel, dy, stride=stride,
                                                          groups=groups)
            dw = lib.melgan_grouped_conv1d_backprop_filter(x, dy, stride=stride, groups=groups,
                                                           kernel_size=kernel_size)
            return dx, dw

        return y, grad

    return conv(tf.convert_to_tensor(x), tf.convert_to_tensor(kernel))
