"""The library's exceptions: one root, so that code calling tf_melgan (a notebook, a
server) catches every refusal of it with `except TfMelganError`, and none is a SystemExit.

Each error class lives in the module that raises it and also derives from the builtin it
refines (ValueError, OSError, RuntimeError), for callers that catch those. Its message is
one line naming the file, setting or argument; the CLIs print it and exit non-zero.
Imports nothing (the TF-free smoke test uses it too).
"""


class TfMelganError(Exception):
    """A refusal of tf_melgan's, with a one-line message."""


class TrainingError(TfMelganError, RuntimeError):
    """Training cannot start or go on (a full disk, a non-finite loss, a model dir in use,
    another architecture, an --init_from that does not fit)."""
