"""What every part of the converter reports with."""

from tf_melgan.errors import TfMelganError


class ConversionError(TfMelganError, RuntimeError):
    """Conversion refused; the message says why. Nothing was written."""


def log(msg: str):
    print(msg, flush=True)
