"""LiteRT (TFLite) export of a tf-melgan generator: `convert.py` (needs TensorFlow) and
`smoke_test.py` (needs only ai-edge-litert, NumPy and soundfile, and tf_melgan/litert.py
from this repo)."""
