#!/usr/bin/env python
"""`python tflite/convert.py ...` from the repo: the LiteRT converter's CLI,
tf_melgan.convert (installed as `tf-melgan-convert`; --help says everything)."""

import os
import sys

if __package__ in (None, ""):  # run as a script: make `tf_melgan` importable from the repo
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tf_melgan.convert import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(sys.argv))
