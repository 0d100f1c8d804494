"""tf_melgan.cli, what every command-line tool shares: --help without TensorFlow,
TensorFlow's C++ lines hidden by default and shown with --debug, console logging that
leaves no trace in-process."""

import logging
import os
import re
import subprocess
import sys

import pytest

from conftest import ROOT, cli_env, data_dir

CLIS = [["-m", "tf_melgan.train"], ["-m", "tf_melgan.export"], ["-m", "tf_melgan.synthesize"],
        ["-m", "tf_melgan.import_pytorch"], ["-m", "tf_melgan.preprocess"],
        ["-m", "tf_melgan.convert"], ["-m", "tf_melgan.smoke_test"],
        ["tflite/convert.py"], ["tflite/smoke_test.py"]]
CPP_LOG = re.compile(r"^([IWEF]\d{4} \d\d:\d\d:\d\d|WARNING: All log messages before absl)",
                     re.M)


@pytest.mark.parametrize("cli", CLIS, ids=lambda c: c[-1])
def test_help_exits_0_and_imports_no_tensorflow(cli, python):
    """--help imports no TensorFlow (what keeps it fast: a wall-clock bound here would fail
    on a loaded machine; timings belong in benchmarks/)."""
    r = subprocess.run([python, "-X", "importtime", *cli, "--help"], cwd=ROOT, env=cli_env(),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr[-2000:]
    assert re.search(r"--(\[no\])?debug", r.stdout)  # every tool documents its debug switch
    assert "\n\nflags:\n" in r.stdout  # one --help style: the module's doc, then the flags
    imported = {line.rsplit("|", 1)[-1].strip().split(".")[0]
                for line in r.stderr.splitlines() if line.startswith("import time:")}
    assert not imported & {"tensorflow", "keras", "torch"}, cli


@pytest.mark.parametrize("cli", CLIS, ids=lambda c: c[-1])
def test_usage_error_is_one_line_and_exit_2(cli, python):
    """One flag parser (tf_melgan.cli.parse_flags): an unknown flag is one line, status 2."""
    r = subprocess.run([python, *cli, "--no_such_flag=1"], cwd=ROOT, env=cli_env(),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stderr[-2000:]
    assert r.stderr.startswith("error: ") and r.stderr.count("\n") == 1, r.stderr
    assert "no_such_flag" in r.stderr and r.stdout == ""


QUIET_TF = """
import sys
from tf_melgan.cli import debug_requested, quiet_tensorflow
quiet_tensorflow(debug_requested("--debug" in sys.argv))
import tensorflow as tf
print(int(tf.constant(2) + 3))  # runs an op: device set-up ('cuInit' on a CPU machine)
"""


def test_tensorflow_cpp_lines_hidden_unless_debug(python):
    quiet = subprocess.run([python, "-c", QUIET_TF], env=cli_env(), capture_output=True,
                           text=True, timeout=300)
    assert quiet.returncode == 0 and quiet.stdout == "5\n", quiet.stderr
    assert quiet.stderr == ""
    debug = subprocess.run([python, "-c", QUIET_TF, "--debug"], env=cli_env(),
                           capture_output=True, text=True, timeout=300)
    assert debug.returncode == 0 and debug.stdout == "5\n", debug.stderr
    assert len(CPP_LOG.findall(debug.stderr)) >= 2, debug.stderr  # e.g. oneDNN, CUDA probes
    same = subprocess.run([python, "-c", QUIET_TF], env=cli_env(TF_MELGAN_DEBUG="1"),
                          capture_output=True, text=True, timeout=300)
    assert len(CPP_LOG.findall(same.stderr)) == len(CPP_LOG.findall(debug.stderr))


def test_preprocess_cli_prints_no_tensorflow_line(python, tmp_path):
    r = subprocess.run([python, "-m", "tf_melgan.preprocess", "--data", data_dir(),
                        "--output", str(tmp_path / "stats.npy"), "--quiet"], cwd=ROOT,
                       env=cli_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stderr == ""
    assert r.stdout.startswith(f"{tmp_path / 'stats.npy'}: mean / std of 80 melgan mel bands")


def test_silenced_stderr_drops_file_descriptor_2_only_inside(capfd):
    from tf_melgan.cli import silenced_stderr

    os.write(2, b"before\n")
    with silenced_stderr():
        os.write(2, b"I0000 a C++ line\n")
        print("out is untouched")
    os.write(2, b"after\n")
    out, err = capfd.readouterr()
    assert err == "before\nafter\n" and out == "out is untouched\n"


def test_console_logging_is_undone(capsys):
    from tf_melgan.cli import console_logging

    log = logging.getLogger("tf_melgan")
    before = (list(log.handlers), log.level, log.propagate)
    with console_logging(verbose=True):
        log.info("an info line")
        log.warning("a warning")
    assert (list(log.handlers), log.level, log.propagate) == before
    out, err = capsys.readouterr()
    assert out == "an info line\n" and err == "warning: a warning\n"
    with console_logging(verbose=False):
        log.info("hidden")
    assert capsys.readouterr().out == ""


def test_python_command(monkeypatch, tmp_path):
    from tf_melgan.cli import python_command

    venv = tmp_path / ".venv" / "bin"
    venv.mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "executable", str(venv / "python"))
    assert python_command() == os.path.join(".venv", "bin", "python")
    monkeypatch.chdir(venv)
    assert python_command() == str(venv / "python")  # not below the working directory


@pytest.mark.parametrize("module", ["tf_melgan.synthesize", "tf_melgan.export",
                                    "tf_melgan.convert"])
def test_help_names_every_shipped_vocoder(module, python):
    from tf_melgan.pretrained import NAMES
    done = subprocess.run([python, "-m", module, "--help"], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    assert done.returncode == 0
    flat = " ".join(done.stdout.split())
    assert all(name in flat for name in NAMES), flat


@pytest.mark.parametrize("args", [
    ["-m", "tf_melgan.synthesize", "--model", "nosuch", "--input", "demo_data/wavs/demo_000.flac",
     "--output", "runs/never.wav"],
    ["-m", "tf_melgan.export", "--model_dir", "nosuch", "--output", "runs/never"],
    ["tflite/convert.py", "--model_dir", "nosuch", "--output", "runs/never.tflite"],
    ["tflite/smoke_test.py", "nosuch"]])
def test_a_missing_model_reads_the_same_in_every_cli(args, python):
    done = subprocess.run([python, *args], capture_output=True, text=True, cwd=ROOT,
                          env=cli_env(), timeout=120)
    assert done.returncode == 1
    lines = (done.stdout + done.stderr).strip().splitlines()
    assert "Traceback" not in done.stderr
    assert lines[-1].endswith("nosuch: no such model (neither a file, a folder nor a shipped "
                              "vocoder's name: ljspeech, ljspeech_large, universal_16k)"), lines


def test_an_unreadable_input_is_one_line_before_the_model_loads(python, tmp_path):
    bad = tmp_path / "garbage.wav"
    bad.write_bytes(b"not audio at all")
    done = subprocess.run([python, "-m", "tf_melgan.synthesize", "--model", "ljspeech",
                           "--input", str(bad), "--output", str(tmp_path / "out.wav")],
                          capture_output=True, text=True, cwd=ROOT, env=cli_env(), timeout=120)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stdout == ""  # no "generator: ..." line: the model was not loaded
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(f"error: {bad}: not a readable audio file ("), line


def test_export_to_a_read_only_place_is_one_line(python, read_only_dir):
    out = read_only_dir / "saved"
    done = subprocess.run([python, "-m", "tf_melgan.export", "--model_dir", "ljspeech",
                           "--output", str(out)], capture_output=True, text=True, cwd=ROOT,
                          env=cli_env(), timeout=120)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line in (f"error: {out}: Read-only file system", f"error: {out}: Permission denied")
    assert os.listdir(read_only_dir) == []


def test_convert_refuses_too_few_frames_before_loading(python):
    done = subprocess.run([python, "tflite/convert.py", "--model_dir", "ljspeech", "--output",
                           "runs/never.tflite", "--frames", "2"], capture_output=True,
                          text=True, cwd=ROOT, env=cli_env(), timeout=60)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        "convert.py: refused, nothing written: --frames 2: a model needs at least 4 frames")


def test_ctrl_c_during_convert_quantize_is_one_line_and_writes_nothing(python, tmp_path):
    import signal
    import time
    out = tmp_path / "v.tflite"
    # --data: a clone without ../shared calibrates on demo_data (else: a one-line refusal)
    proc = subprocess.Popen([python, "tflite/convert.py", "--model_dir", "ljspeech", "--output",
                             str(out), "--quantize", "--data", data_dir()], cwd=ROOT,
                            env=cli_env(), stderr=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True,
                            # a shell's Ctrl-C: a test run started in the background
                            # (`pytest &`, CI) passes an ignored SIGINT on to its children
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    for line in proc.stdout:  # inside the conversion: the SavedModel export starts
        if line.startswith("exporting a SavedModel"):
            break
    proc.send_signal(signal.SIGINT)
    started = time.time()
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130 and time.time() - started < 10, stderr[-3000:]
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1] == ("convert.py: refused, nothing written: "
                                               "interrupted (Ctrl-C)")
    assert os.listdir(tmp_path) == []
