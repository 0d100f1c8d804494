"""The training CLI as a user sees it: plain lines when its output is redirected (nohup,
SLURM), a bar of at most the terminal's width in a terminal, no TensorFlow C++ lines, the
end-of-training summary and its next commands, the reference clip beside the samples, a
loud warning when nothing is held out, and a prompt exit.

`trained_run` (conftest) is one tiny run with stdout and stderr in one pipe; the terminal
test runs the CLI in a pseudo-terminal of 80 columns."""

import json
import os
import re
import select
import shlex
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf

from conftest import ROOT, TINY, cli_env, data_dir


# TensorFlow's C++ log lines (absl format) and the line absl prints before it is set up.
CPP_LOG = re.compile(r"^([IWEF]\d{4} \d\d:\d\d:\d\d|WARNING: All log messages before absl)")
CLOCK = r"\d\d:\d\d:\d\d"


def text_of(run):
    assert run["returncode"] == 0, run["log"][-3000:].decode(errors="replace")
    return run["log"].decode()


def summary_of(text):
    lines = text.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("training finished"))
    return lines[first:]


def held_out_clips():
    from tf_melgan.data import find_audio_files, split_files
    return split_files(find_audio_files(data_dir()), 2)[1]


def test_redirected_log_is_a_few_plain_lines(trained_run):
    text = text_of(trained_run)
    log = trained_run["log"]
    assert b"\x1b" not in log and b"\b" not in log and b"\r" not in log  # no bar, no colour
    assert [line for line in text.splitlines() if CPP_LOG.match(line)] == []
    # The default --log_every 50: one progress line at step 50, one validation line.
    progress = [line for line in text.splitlines() if re.match(f"{CLOCK} step \\d+/", line)]
    assert len(progress) == 1, text
    assert re.fullmatch(f"{CLOCK} step 50/50 \\(100%\\) d_loss \\S+ feature_matching \\S+ "
                        r"g_adv \S+ g_loss \S+ mel_l1 \S+ \| [\d.]+ (steps/s|s/step), ETA 0s",
                        progress[0]), progress[0]
    best = json.load(open(os.path.join(trained_run["model_dir"], "best.json")))
    validation = [line for line in text.splitlines() if "validation log-mel L1" in line][0]
    assert re.fullmatch(f"{CLOCK} step 50: validation log-mel L1 {best['val_mel_l1']:.4f} "
                        r"\(best so far, saved\)", validation), validation
    # What training writes per 100 steps, from the first step to the summary.
    start = text.index("\n", text.index("training from step 0 to 50")) + 1
    per_100_steps = len(text[start:text.index("training finished")].encode()) * 100 / 50
    print(f"redirected log: {per_100_steps:.0f} bytes per 100 steps; whole run "
          f"{len(log)} bytes")
    assert per_100_steps <= 1024


def test_summary_says_what_happened_and_what_to_run_next(trained_run):
    d = trained_run["model_dir"]
    best = json.load(open(os.path.join(d, "best.json")))
    summary = summary_of(text_of(trained_run))
    assert re.fullmatch(r"training finished at step 50 of 50 \(50 steps in \d+(s|m\d\ds)\)",
                        summary[0]), summary[0]
    assert summary[1:6] == [
        f"  best:       step 50, validation log-mel L1 {best['val_mel_l1']:.4f} -> "
        f"{d}/best_generator.weights.h5",
        f"  checkpoint: {d}/checkpoints/ckpt-50",
        f"  samples:    {d}/samples (reference.wav: the held-out clip; step_*.wav: the "
        f"generator's)",
        f"  logs:       {d}/logs",
        "next:"]
    assert best["step"] == 50
    commands = [shlex.split(line) for line in summary[6:]]
    # The interpreter that ran training, as typed from the working directory.
    python = os.path.join(ROOT, commands[0][0])
    assert os.path.samefile(python, sys.executable)
    clip = held_out_clips()[0]
    stem = os.path.splitext(os.path.basename(clip))[0]
    assert [c[1:] for c in commands[:3]] == [
        ["-m", "tf_melgan.export", "--model_dir", d, "--output", f"{d}/saved_model"],
        ["tflite/convert.py", "--model_dir", d, "--output", f"{d}/vocoder.tflite"],
        ["-m", "tf_melgan.synthesize", "--model", d, "--input", clip,
         "--output", f"{d}/{stem}.wav"]]
    assert os.path.basename(commands[3][0]) == "tensorboard"
    assert commands[3][1:] == ["--logdir", f"{d}/logs"]


def test_next_commands_run_and_say_which_generator(trained_run):
    """The export and synthesize commands of the summary, run as printed: they work, name
    the generator (best, its step and score) and print no TensorFlow C++ line."""
    d = trained_run["model_dir"]
    best = json.load(open(os.path.join(d, "best.json")))
    summary = summary_of(text_of(trained_run))
    generator = (f"generator: best generator (step 50, validation log-mel L1 "
                 f"{best['val_mel_l1']:.4f}) of {d}")
    for line in (summary[6], summary[8]):  # export, synthesize
        r = subprocess.run(shlex.split(line), cwd=ROOT, env=cli_env(), capture_output=True,
                           text=True, timeout=300)
        assert r.returncode == 0, r.stderr[-3000:]
        assert r.stderr == "", r.stderr  # not a single C++ or warning line
        assert r.stdout.splitlines()[0] == generator, r.stdout
    stem = os.path.splitext(os.path.basename(held_out_clips()[0]))[0]
    audio, rate = sf.read(os.path.join(d, f"{stem}.wav"))
    assert rate == 22050 and len(audio) > 0 and np.all(np.isfinite(audio))
    with open(os.path.join(d, "saved_model", "assets", "tf_melgan.json")) as f:
        source = json.load(f)["source"]
    assert source["which"] == "best" and source["step"] == 50
    assert source["val_mel_l1"] == pytest.approx(best["val_mel_l1"])


def test_samples_hold_the_reference_clip(trained_run):
    """samples/reference.wav is the held-out clip the step_*.wav files vocode (its first
    data.eval_segment_length samples, as validation uses it), to compare by ear."""
    from tf_melgan.data import AudioSource, validation_audio

    samples = os.path.join(trained_run["model_dir"], "samples")
    assert sorted(os.listdir(samples)) == ["reference.wav", "step_00000050.wav"]
    reference, rate = sf.read(os.path.join(samples, "reference.wav"), dtype="float32")
    expected = validation_audio(AudioSource(held_out_clips(), 22050, verbose=False), 4096)[0]
    assert rate == 22050 and reference.shape == expected.shape == (4096,)
    np.testing.assert_allclose(reference, expected, atol=1.0 / 32768)  # 16-bit wav
    generated, _ = sf.read(os.path.join(samples, "step_00000050.wav"))
    assert generated.shape == (4096,)


def test_process_exits_as_soon_as_it_is_done(trained_run):
    """Nothing runs after the summary: the interpreter's teardown (seconds of garbage
    collection over Keras' and TensorFlow's objects) is skipped."""
    text_of(trained_run)
    print(f"exit {trained_run['exit_delay']:.2f} s after the last line")
    assert trained_run["exit_delay"] < 1.5  # before: 2-3 s (default strategy), 15 s (mirrored)


def run_in_terminal(cmd, columns, timeout=600):
    """Runs cmd with stdin / stdout / stderr on a pseudo-terminal `columns` wide; returns
    (exit status, everything it wrote)."""
    import fcntl
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    proc = subprocess.Popen(cmd, cwd=ROOT, env=cli_env(TERM="xterm", COLUMNS=""),
                            stdin=slave, stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    out, deadline = b"", time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1.0)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            out += chunk
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
    return proc.wait(), out.decode(errors="replace")


def test_terminal_shows_a_bar_and_warns_when_nothing_is_held_out(tmp_path, clip_path):
    """In an 80-column terminal: one bar, redrawn with carriage returns, never wider than
    79 columns (no wrap); --data pointing at one audio file trains and validates on it
    with a loud warning, repeated in the summary."""
    cmd = [sys.executable, "-m", "tf_melgan.train", "--config", "configs/base.yaml",
           "--model_dir", str(tmp_path / "model"), "--data", clip_path]
    for override in TINY + ["training.steps=6", "training.steps_per_epoch=3",
                            "training.sample_every=1000"]:
        cmd += ["--set", override]
    status, out = run_in_terminal(cmd, columns=80)
    assert status == 0, out[-3000:]
    lines = out.split("\r\n")  # the terminal turns "\n" into "\r\n"
    frames = [frame for line in lines for frame in line.split("\r")]
    drawn = [f for f in frames if f.startswith(("step ", "decoding audio: "))]  # the bars
    assert drawn and max(len(frame) for frame in drawn) <= 79, max(drawn, key=len)
    bars = [f for f in drawn if re.match(r"step \d/6 \[[#.]{10}\] +\d+% d \S+ g \S+ mel \S+ \| ",
                                         f)]
    assert len(bars) >= 2 and bars[-1].startswith("step 6/6 [##########] 100%"), frames
    assert not [line for line in lines if CPP_LOG.match(line)]
    assert "\x1b" not in out and "\b" not in out
    warning = [line for line in lines if "NO HELD-OUT AUDIO" in line]
    assert len(warning) == 1 and re.match(
        f"{CLOCK} warning: NO HELD-OUT AUDIO: {re.escape(clip_path)} is the only audio file",
        warning[0]), warning
    best = [line for line in lines if line.startswith("  best:")]
    assert best and "(NOT held out: validated on the training audio)" in best[0], best
