"""Deployment: what travels with an export and how any export is run.

- `manifest`: the one typed manifest (audio config, mel recipe and stats, architecture,
  receptive field, format, quantization, tensor names, measured quality), its one writer
  (`manifest_for`) and its one reader (`read_manifest`);
- `vocoder`: the one `Vocoder` interface and `load_vocoder` for a model dir, a shipped
  vocoder's name, a SavedModel or a .tflite file;
- `litert`: the TensorFlow-free LiteRT runtime (op checks, the interpreter);
- `graph`: the export generator (graph options chosen at build time) and its SavedModel;
- `convert`: the LiteRT converter, split by job (data, quantize, ranges, checks).

Nothing here imports TensorFlow at import time: `manifest`, `vocoder` and `litert` run in
an environment with only ai-edge-litert, NumPy, soundfile and absl-py.
"""
