"""What the command-line tools share: flag parsing with one-line errors, a quiet TensorFlow
start-up (its C++ lines only with --debug), console logging and the interpreter to suggest.

Every CLI parses its flags first (so --help and usage errors never wait for TensorFlow),
then calls `quiet_tensorflow(debug)` before anything imports TensorFlow. Importing
tf_melgan itself changes no environment: only the CLIs do.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import logging
import os
import signal
import sys
import warnings
from tf_melgan.progress import echo

DEBUG_ENV = "TF_MELGAN_DEBUG"  # =1: what --debug does, for every CLI
DEBUG_HELP = ("Show everything: TensorFlow's C++ log lines, Python warnings and full "
              "tracebacks (also TF_MELGAN_DEBUG=1).")
# Python warnings from these packages are TensorFlow's business, not the user's.
NOISY_PACKAGES = r"(tensorflow|keras|tf_keras|absl|google\.protobuf|ai_edge_litert)(\.|$)"


def one_line(e: BaseException) -> str:
    """The first non-empty line of an exception's message (or its type's name)."""
    lines = [line for line in str(e).strip().splitlines() if line.strip()]
    return lines[0] if lines else type(e).__name__


def new_flags():
    """An empty absl FlagValues of a CLI's own (absl's global FLAGS would mix the flags of
    every CLI imported into one process, e.g. in tests)."""
    from absl import flags
    return flags.FlagValues()


def parse_flags(flag_values, argv, doc: str, required=(), positional=None):
    """Parses argv (argv[0] is the program) into `flag_values`. Returns None to go on, or
    the exit status: 0 after printing help (the module's doc, then the flags), 2 after a
    one-line usage error on stderr (unknown flag, bad value, a `required` flag missing).
    Positional arguments go into the list `positional`; without one they are an error."""
    from absl import flags

    if any(a in ("-h", "--help", "-help", "--helpfull") for a in argv[1:]):
        print(f"{doc.strip()}\n\nflags:\n{flag_values.get_help()}")
        return 0
    try:
        rest = flag_values(list(argv))[1:]
    except flags.Error as e:
        print(f"error: {one_line(e)}", file=sys.stderr)
        return 2
    missing = [f"--{n}" for n in required if flag_values[n].value in (None, "")]
    if missing:
        print(f"error: {', '.join(missing)} required", file=sys.stderr)
        return 2
    if rest and positional is None:
        print(f"error: unexpected argument {rest[0]!r}", file=sys.stderr)
        return 2
    if positional is not None:
        positional.extend(rest)
    return None


def report(e: BaseException, debug: bool, prefix: str = "error: ") -> int:
    """A CLI's failure: one line on stderr and status 1 (with --debug: re-raised)."""
    if debug:
        raise e
    print(f"{prefix}{one_line(e)}", file=sys.stderr)
    return 1


@contextlib.contextmanager
def ctrl_c_recorded():
    """Within the block, Ctrl-C still raises KeyboardInterrupt, and is also recorded in
    the yielded list: code that calls back into Python from C++ (the converter's
    calibration, TensorFlow's tracing) can turn the KeyboardInterrupt into an ordinary
    error, which the CLI must still report as an interrupt (status 130)."""
    seen: list = []
    previous = signal.getsignal(signal.SIGINT)
    if previous is signal.SIG_IGN:  # started in the background (nohup, `&`): stays ignored
        yield seen
        return

    def record(signum, frame):
        seen.append(signum)
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, record)
    try:
        yield seen
    finally:
        signal.signal(signal.SIGINT, previous)


def debug_requested(flag: bool = False) -> bool:
    """--debug given, or TF_MELGAN_DEBUG set to anything but '' or '0'."""
    return bool(flag) or os.environ.get(DEBUG_ENV, "") not in ("", "0")


@contextlib.contextmanager
def silenced_stderr():
    """Drops what is written to file descriptor 2 within the block: C++ libraries log
    there directly, past sys.stderr."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


_quiet = False  # set by quiet_tensorflow: native libraries' own lines are dropped too


def native_logs_silenced():
    """silenced_stderr() once a CLI quieted TensorFlow (no --debug), else no-op: for calls
    whose C++ code prints unasked ('fully_quantize: 0, ...' from the int8 quantizer;
    LiteRT's 'INFO: Created TensorFlow Lite XNNPACK delegate for CPU.')."""
    return silenced_stderr() if _quiet else contextlib.nullcontext()


class _SilentLoader(importlib.abc.Loader):
    """Runs another loader's exec_module with fd 2 closed (see quiet_tensorflow)."""

    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        with silenced_stderr():
            self.loader.exec_module(module)


class _QuietTensorFlowImport(importlib.abc.MetaPathFinder):
    """Finds `tensorflow` once, with a loader that imports it silently."""

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _SilentLoader(spec.loader)
        return spec


def quiet_tensorflow(debug: bool = False) -> None:
    """Call before TensorFlow is imported (it is then imported only if the tool needs it;
    TensorFlow-free tools call it too, for LiteRT's lines).
    Default: TF_CPP_MIN_LOG_LEVEL=3 unless set already, which hides TensorFlow's C++ info,
    warning and error lines (CUDA probing on a CPU machine reads like a failure: 'failed
    call to cuInit'; oneDNN notes); the lines it prints while loading, before its logging
    is set up, which no level hides, are dropped by importing it with fd 2 closed; its
    Python warnings are ignored. Real errors still arrive as Python exceptions.
    debug: everything shows."""
    global _quiet
    if debug:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
        os.environ[DEBUG_ENV] = "1"  # child processes too
        _quiet = False
        return
    _quiet = True
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    warnings.filterwarnings("ignore", module=NOISY_PACKAGES)
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    if "tensorflow" not in sys.modules and not any(
            isinstance(f, _QuietTensorFlowImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietTensorFlowImport())


class ConsoleHandler(logging.Handler):
    """INFO lines on stdout, warnings and errors on stderr as 'warning: ...' /
    'error: ...'; above the progress bar when one is drawn."""

    def __init__(self, timestamps: bool = False):
        super().__init__()
        self.timestamps = timestamps

    def emit(self, record):

        try:
            text = record.getMessage()
            if record.levelno >= logging.WARNING:
                text = f"{record.levelname.lower()}: {text}"
            if self.timestamps:
                text = f"{self.formatter.formatTime(record, '%H:%M:%S')} {text}"
            echo(text, sys.stderr if record.levelno >= logging.WARNING else sys.stdout)
        except Exception:  # noqa: BLE001 - logging must not raise
            self.handleError(record)


@contextlib.contextmanager
def console_logging(verbose: bool = True, timestamps: bool = False):
    """Within the block, the 'tf_melgan' logger writes to the console (ConsoleHandler),
    INFO only when `verbose`, and not also through the root logger (absl puts its own
    handler there). Restored after: a CLI run in-process (tests) leaves no trace."""
    log = logging.getLogger("tf_melgan")
    saved = (log.handlers[:], log.level, log.propagate)
    handler = ConsoleHandler(timestamps)
    handler.setFormatter(logging.Formatter())
    log.handlers = [handler]
    log.setLevel(logging.INFO if verbose else logging.WARNING)
    log.propagate = False
    try:
        yield log
    finally:
        log.handlers, log.level, log.propagate = saved


def python_command() -> str:
    """The interpreter as the user would type it: relative to the working directory when
    it lives below it (.venv/bin/python), else its full path."""
    exe = sys.executable or "python"
    rel = os.path.relpath(exe)
    return rel if not rel.startswith("..") and os.sep in rel else exe


def exit_now(status: int) -> None:
    """Ends the process with `status` after flushing the console, without the
    interpreter's teardown: after a training run that is seconds to minutes of garbage
    collection over the objects Keras and TensorFlow leave (see tf_melgan.train.cli).
    Everything must be written and closed before."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(status)
