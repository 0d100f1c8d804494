"""What every part of the converter reports with."""


class ConversionError(RuntimeError):
    """Conversion refused; the message says why. Nothing was written."""


def log(msg: str):
    print(msg, flush=True)
