"""Inspecting and running a .tflite vocoder with LiteRT alone: the op checks and
`LiteRTModel`, the interpreter behind `deploy.vocoder.Vocoder` for .tflite files.

Imports only the standard library, NumPy and ai_edge_litert (never TensorFlow), so that the
smoke test runs where an app's tooling would; the converter checks what it writes with the
same code.
"""

from __future__ import annotations

import collections
import contextlib
import math
import os

import numpy as np
from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.interpreter import Interpreter

from tf_melgan.cli import native_logs_silenced
from tf_melgan.errors import TfMelganError

# Resource-variable ops: a converter that did not freeze the weights into the file emits
# these (TF 2.21's from_concrete_functions / saved_model.save with a lambda signature).
# Such a model reads uninitialized variables: NaN or garbage under XNNPACK.
VARIABLE_OPS = ("VAR_HANDLE", "READ_VARIABLE", "ASSIGN_VARIABLE", "CALL_ONCE")
SNR_CAP_DB = 200.0  # identical outputs; keeps the JSON finite

_BUILTIN_NAMES = {v: k for k, v in vars(schema.BuiltinOperator).items()
                  if not k.startswith("_") and isinstance(v, int)}
_TENSOR_TYPES = {v: k for k, v in vars(schema.TensorType).items()
                 if not k.startswith("_") and isinstance(v, int)}


TFLITE_IDENTIFIER = b"TFL3"  # the flatbuffer file identifier, bytes 4..8 of a .tflite


class ModelCheckError(TfMelganError, ValueError):
    """A .tflite file is not a usable tf-melgan vocoder; the message says why."""


def read_ops(model) -> list[dict]:
    """Every operator of every subgraph of a .tflite (a path or the bytes), parsed from the
    flatbuffer (so it works for models the interpreter cannot even load, e.g. Flex ops):
    [{'op': 'CONV_2D' | 'CUSTOM:<code>', 'inputs': ['INT8', ...], 'outputs': [...]}]."""
    name = "the model"
    if isinstance(model, (str, os.PathLike)):
        name = os.fspath(model)
        with open(model, "rb") as f:
            model = f.read()
    if bytes(model[4:8]) != TFLITE_IDENTIFIER:  # e.g. the sidecar .json given by mistake
        raise ModelCheckError(f"{name} is not a .tflite model (no {TFLITE_IDENTIFIER.decode()} "
                              f"identifier)")
    m = schema.Model.GetRootAs(bytearray(model), 0)
    codes = []
    for i in range(m.OperatorCodesLength()):
        oc = m.OperatorCodes(i)
        code = max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode())
        name = _BUILTIN_NAMES.get(code, f"BUILTIN_{code}")
        if name == "CUSTOM":
            custom = oc.CustomCode()
            name = "CUSTOM:" + (custom.decode() if custom else "?")
        codes.append(name)
    ops = []
    for s in range(m.SubgraphsLength()):
        g = m.Subgraphs(s)

        def types(indices):
            return [None if t < 0 else _TENSOR_TYPES.get(g.Tensors(t).Type(), "?")
                    for t in indices]

        for o in range(g.OperatorsLength()):
            op = g.Operators(o)
            ops.append({"op": codes[op.OpcodeIndex()],
                        "inputs": types(op.InputsAsNumpy() if op.InputsLength() else []),
                        "outputs": types(op.OutputsAsNumpy() if op.OutputsLength() else [])})
    return ops


def op_counts(ops) -> dict:
    return dict(collections.Counter(o["op"] for o in ops).most_common())


def op_problems(ops) -> list[str]:
    """What keeps a model from running on the builtin LiteRT runtime with its weights."""
    problems = []
    names = collections.Counter(o["op"] for o in ops)
    flex = sorted(n for n in names if n.startswith("CUSTOM:Flex"))
    if flex:
        problems.append(f"Flex (SELECT_TF_OPS) ops {', '.join(n[7:] for n in flex)}: need the "
                        "TensorFlow Lite Flex delegate")
    custom = sorted(n for n in names if n.startswith("CUSTOM:") and n not in flex)
    if custom:
        problems.append(f"custom ops {', '.join(n[7:] for n in custom)}: not builtin")
    variables = [n for n in VARIABLE_OPS if n in names]
    if variables:
        problems.append(f"resource-variable ops {', '.join(variables)}: the weights were not "
                        "frozen into the file (NaN or garbage at run time)")
    return problems


def compute_kernels(ops) -> dict:
    """How the heavy ops compute: {'CONV_2D int8 x int8': 30, 'CONV_2D float32 x int8': 8}
    (activation type x weight type). 'float32 x int8' is a hybrid (dynamic-range) kernel."""
    kinds = collections.Counter()
    for o in ops:
        if o["op"] in ("CONV_2D", "TRANSPOSE_CONV", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
            # TRANSPOSE_CONV's inputs are (output_shape, weights, activation[, bias]).
            act, w = (o["inputs"][2], o["inputs"][1]) if o["op"] == "TRANSPOSE_CONV" \
                else (o["inputs"][0], o["inputs"][1])
            kinds[f"{o['op']} {str(act).lower()} x {str(w).lower()}"] += 1
    return dict(sorted(kinds.items()))


def snr_db(reference, estimate) -> float:
    """10 log10(|reference|^2 / |reference - estimate|^2), capped at SNR_CAP_DB."""
    reference = np.asarray(reference, np.float64).ravel()
    estimate = np.asarray(estimate, np.float64).ravel()
    if reference.shape != estimate.shape:
        raise ValueError(f"shapes differ: {reference.shape} vs {estimate.shape}")
    noise = float(np.sum((reference - estimate) ** 2))
    signal = float(np.sum(reference ** 2))
    if noise == 0.0:
        return SNR_CAP_DB
    if signal == 0.0 or not math.isfinite(noise):
        return -SNR_CAP_DB
    return min(SNR_CAP_DB, 10.0 * math.log10(signal / noise))


class LiteRTModel:
    """A .tflite vocoder called through its signature: log-mel [frames, n_mels] (or
    [1, frames, n_mels]) -> audio [1, frames * hop] float32. Quantizes the input and
    dequantizes the output when the model's I/O tensors are int8."""

    def __init__(self, model_path: str, num_threads: int = 2, signature: str | None = None):
        try:
            self.interpreter = Interpreter(model_path=model_path, num_threads=num_threads)
        except ValueError as e:
            raise ModelCheckError(f"{model_path}: not a valid TFLite model (LiteRT cannot "
                                  f"load it: {e})") from None
        signatures = self.interpreter.get_signature_list()
        if not signatures:
            raise ModelCheckError(f"{model_path} has no signature (export through "
                                  "keras.export.ExportArchive -> from_saved_model)")
        if signature is None:
            if len(signatures) != 1:
                raise ModelCheckError(f"{model_path} has several signatures "
                                      f"{sorted(signatures)}; name one")
            signature = next(iter(signatures))
        if signature not in signatures:
            raise ModelCheckError(f"{model_path} has no signature '{signature}' "
                                  f"(has {sorted(signatures)})")
        self.signature = signature
        self.runner = self.interpreter.get_signature_runner(signature)
        inputs, outputs = self.runner.get_input_details(), self.runner.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ModelCheckError(f"signature '{signature}' has {len(inputs)} inputs and "
                                  f"{len(outputs)} outputs, expected 1 and 1")
        (self.input_name, self.input), = inputs.items()
        (self.output_name, self.output), = outputs.items()
        sig = [int(d) for d in self.input["shape_signature"]]
        if len(sig) != 3:
            raise ModelCheckError(f"input '{self.input_name}' has shape {sig}, "
                                  "expected [1, frames, n_mels]")
        self.n_mels = sig[2]
        self.fixed_frames = None if sig[1] < 0 else sig[1]
        self._first_call = True

    @staticmethod
    def _quant(details):
        scale, zero = details["quantization"]
        return float(scale), int(zero)

    def __call__(self, mel) -> np.ndarray:
        mel = np.asarray(mel, np.float32)
        if mel.ndim == 2:
            mel = mel[None]
        if mel.ndim != 3 or mel.shape[0] != 1 or mel.shape[2] != self.n_mels:
            raise ValueError(f"mel must be [frames, {self.n_mels}] or [1, frames, "
                             f"{self.n_mels}], got {list(mel.shape)}")
        if self.fixed_frames is not None and mel.shape[1] != self.fixed_frames:
            raise ValueError(f"this model takes exactly {self.fixed_frames} frames "
                             f"(converted with --frames), got {mel.shape[1]}")
        x = mel
        dtype = np.dtype(self.input["dtype"])
        if dtype != np.float32:
            scale, zero = self._quant(self.input)
            info = np.iinfo(dtype)
            x = np.clip(np.round(mel / scale) + zero, info.min, info.max).astype(dtype)
        with native_logs_silenced() if self._first_call else contextlib.nullcontext():
            # the first invoke applies XNNPACK and says so on stderr
            y = self.runner(**{self.input_name: x})[self.output_name]
        self._first_call = False
        if np.dtype(y.dtype) != np.float32:
            scale, zero = self._quant(self.output)
            y = (y.astype(np.float32) - zero) * scale
        return np.array(y, np.float32)  # a copy: the runner's buffer is reused
