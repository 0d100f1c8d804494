"""LiteRT (TFLite) export of a tf-melgan generator: `convert.py` (needs TensorFlow) and
`smoke_test.py` + `litert_runtime.py` (need only ai-edge-litert, NumPy and soundfile)."""
