"""Entry points kept for `python tflite/convert.py` and `python tflite/smoke_test.py` from
the repo; the code is in tf_melgan.deploy (tf_melgan.convert, tf_melgan.smoke_test)."""
