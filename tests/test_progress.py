"""tf_melgan.progress: plain lines into a file, a bar of at most 100 columns (and less than
the terminal's width) on a terminal, rates and ETAs from the recent updates."""

import io
import re

import pytest

from tf_melgan import progress as P


class Terminal(io.StringIO):
    """A stream that says it is a terminal (its width comes from $COLUMNS)."""

    def isatty(self):
        return True

    def fileno(self):
        raise io.UnsupportedOperation


@pytest.fixture
def clock(monkeypatch):
    """time.monotonic() of the progress module, set by the test: clock.now = 12.0."""
    class Clock:
        now = 0.0

    c = Clock()
    monkeypatch.setattr(P.time, "monotonic", lambda: c.now)
    return c


def test_lines_into_a_file_every_n_units(clock):
    out = io.StringIO()
    bar = P.Progress(200, "step", "step", stream=out, every=50)
    assert bar.mode == "lines"  # not a terminal
    for step in range(1, 201):
        clock.now = step * 0.5  # 2 steps/s
        bar.update(step, f"loss {1 / step:.4g}")
    bar.close()
    lines = out.getvalue().splitlines()
    assert lines == [f"step {s}/200 ({s // 2}%) loss {1 / s:.4g} | 2.00 steps/s, "
                     f"ETA {P.format_duration((200 - s) / 2)}" for s in (50, 100, 150, 200)]
    assert lines[0].endswith("ETA 1m15s")
    assert not re.search(r"[\r\b\x1b]", out.getvalue())


def test_lines_by_time_and_a_final_line(clock):
    out = io.StringIO()
    bar = P.Progress(10, "clips:", "clip", stream=out, seconds=30)
    for i in range(1, 11):
        clock.now = i * 10.0  # a line every 30 s: after clips 3, 6 and 9
        bar.update(i)
    bar.close("done: 10 clips")
    assert [line.split(" | ")[0] for line in out.getvalue().splitlines()] == [
        "clips: 3/10 (30%)", "clips: 6/10 (60%)", "clips: 9/10 (90%)", "done: 10 clips"]
    assert "10.0 s/clip" in out.getvalue().splitlines()[1]


def test_rate_leaves_out_the_first_update(clock):
    """The first step includes tracing: the rate counts from the first update on."""
    bar = P.Progress(100, "step", stream=io.StringIO(), mode="lines")
    clock.now = 30.0
    bar.update(1)  # 30 s of start-up
    assert bar.line() == "step 1/100 (1%) | ? steps/s, ETA ?"
    clock.now = 32.0
    bar.update(21)
    assert bar.rate() == pytest.approx(10.0)
    assert bar.line() == "step 21/100 (21%) | 10.00 steps/s, ETA 8s"


@pytest.mark.parametrize("columns,width", [(159, 100), (120, 100), (80, 79), (60, 59)])
def test_bar_fits_the_terminal(monkeypatch, clock, columns, width):
    monkeypatch.setenv("COLUMNS", str(columns))
    monkeypatch.setenv("TERM", "xterm")
    out = Terminal()
    bar = P.Progress(5000, "step", stream=out)
    assert bar.mode == "bar"
    losses = "d 5.99 g 97.9 mel 2.16 " + "x" * 200  # longer than any terminal
    for step in range(1, 5001, 7):
        clock.now = step * 0.1
        bar.update(step, losses)
    bar.close()
    frames = out.getvalue().replace("\n", "\r").split("\r")
    assert max(len(f) for f in frames) == width
    last = [f for f in frames if f.startswith("step 4999/5000")][-1]
    slots = 20 if width >= 99 else 10
    assert last.startswith(f"step 4999/5000 [{'#' * (slots - 1)}.]  99% d ")
    assert width < 79 or " d 5.99 g 97.9 mel " in last
    assert last.endswith("~ | 10.00 steps/s ETA 0s")  # the losses give way, not the ETA


def test_lines_written_above_the_bar(monkeypatch, clock):
    monkeypatch.setenv("COLUMNS", "100")
    monkeypatch.setenv("TERM", "xterm")
    out = Terminal()
    bar = P.Progress(10, "step", stream=out)
    clock.now = 1.0
    bar.update(1)
    drawn = out.getvalue()
    P.echo("validation 0.74", out)
    cleared = "\r" + " " * (len(drawn) - 1) + "\r"
    assert out.getvalue() == drawn + cleared + "validation 0.74\n" + drawn
    bar.close()
    assert P._active is None
    assert out.getvalue().endswith(drawn + "\n")  # the finished bar stays


def test_auto_mode():
    assert P.resolve_mode("auto", io.StringIO()) == "lines"
    assert P.resolve_mode("auto", Terminal()) == "bar"
    assert P.resolve_mode("lines", Terminal()) == "lines"
    with pytest.raises(ValueError, match="one of auto, bar, lines, none"):
        P.resolve_mode("fancy")


def test_dumb_terminal_gets_lines(monkeypatch):
    monkeypatch.setenv("TERM", "dumb")
    assert P.resolve_mode("auto", Terminal()) == "lines"


def test_formats():
    assert [P.format_duration(s) for s in (0.4, 59, 61, 3599, 3600, 90061, float("nan"))] == [
        "0s", "59s", "1m01s", "59m59s", "1h00m", "1d01h", "?"]
    assert P.format_rate(3.214, "step") == "3.21 steps/s"
    assert P.format_rate(0.2, "step") == "5.0 s/step"
    assert P.format_rate(float("nan"), "clip") == "? clips/s"
