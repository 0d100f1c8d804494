#!/usr/bin/env python
"""`python tflite/smoke_test.py vocoder.tflite` from the repo: the TensorFlow-free smoke test
of a converted vocoder, tf_melgan.smoke_test (installed as `tf-melgan-smoke-test`)."""

import os
import sys

if not __package__:  # run as a script from the repo: make tf_melgan importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tf_melgan.smoke_test import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(sys.argv))
