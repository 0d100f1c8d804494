"""Progress on the console, readable in a terminal and in a log file.

On a terminal: one bar redrawn in place with a carriage return (at most 100 columns, so it
never wraps on an 80- or 120-column terminal; no escape codes). Anywhere else (a file under
nohup, SLURM or Kubernetes, a pipe): plain lines, one every `every` units or `seconds`
seconds, so a long job writes a few hundred bytes a minute, not a 35 KB line per epoch.
`auto` picks the bar only when the stream is a terminal. TensorFlow-free.
"""

from __future__ import annotations

import collections
import os
import shutil
import sys
import time

MAX_WIDTH = 100
MODES = ("auto", "bar", "lines", "none")
BAR_REDRAW_SECONDS = 0.1  # a terminal is not a log: redraw at most this often

_active = None  # the bar on screen, if any: other lines are written above it


def is_terminal(stream) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty()) and os.environ.get("TERM") != "dumb"
    except ValueError:  # a closed stream
        return False


def resolve_mode(mode: str, stream=None) -> str:
    """'auto' -> 'bar' on a terminal, else 'lines'; other modes as given."""
    if mode not in MODES:
        raise ValueError(f"progress mode must be one of {', '.join(MODES)}, got {mode!r}")
    if mode == "auto":
        return "bar" if is_terminal(stream or sys.stdout) else "lines"
    return mode


def bar_width(stream=None) -> int:
    """Columns a bar may use: the terminal's width less one (no auto-wrap), at most 100."""
    columns = shutil.get_terminal_size((80, 24)).columns
    try:
        columns = os.get_terminal_size((stream or sys.stdout).fileno()).columns or columns
    except (AttributeError, OSError, ValueError):
        pass
    return max(20, min(MAX_WIDTH, columns - 1))


def format_duration(seconds: float) -> str:
    """45s, 3m07s, 2h05m, 3d04h."""
    if seconds != seconds or seconds == float("inf"):
        return "?"
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def format_rate(per_second: float, unit: str) -> str:
    """'3.21 steps/s', or '4.8 s/step' when slower than one per second."""
    if not per_second > 0:
        return f"? {unit}s/s"
    if per_second >= 1:
        return f"{per_second:.2f} {unit}s/s"
    return f"{1 / per_second:.1f} s/{unit}"


def echo(text: str, stream=None) -> None:
    """Writes a line; on a terminal with a bar drawn, above the bar."""
    stream = stream or sys.stdout
    bar = _active
    if bar is not None:
        bar.clear()
    stream.write(text + "\n")
    stream.flush()
    if bar is not None:
        bar.redraw()


class Progress:
    """Progress of `total` units (steps, clips, files) from `start`.

    mode: 'bar' (redrawn in place), 'lines' (a plain line every `every` units and at most
    every `seconds` seconds, whichever is given; both None: only at the end), 'none', or
    'auto'. update(done, extra) reports `done` units done in all, `extra` a short text
    (losses); close(final) ends with `final` as the last line. Lines and messages go
    through `emit` (default: `echo` on `stream`), e.g. a logger's info().
    """

    def __init__(self, total: int, label: str, unit: str = "step", mode: str = "auto",
                 stream=None, start: int = 0, every: int | None = None,
                 seconds: float | None = None, emit=None):
        self.stream = stream or sys.stdout
        self._emit = emit or (lambda text: echo(text, self.stream))
        self.mode = resolve_mode(mode, self.stream)
        self.total, self.label, self.unit = max(int(total), 1), label, unit
        self.every, self.seconds = every, seconds
        self.done, self.extra = start, ""
        now = time.monotonic()
        self.started = now
        # Recent (time, done) of updates; not the start: the first update often includes
        # start-up (tracing, compiling), which would skew the rate for a long time.
        self._window = collections.deque(maxlen=64)
        self._last_line = (now, start)
        self._drawn = 0  # width of the bar on screen
        self._last_draw = 0.0
        self._closed = False

    # -------------------------------------------------------------- numbers

    def rate(self) -> float:
        """Units per second over the last (up to 64) updates."""
        if len(self._window) < 2:
            return float("nan")
        (t0, d0), (t1, d1) = self._window[0], self._window[-1]
        return (d1 - d0) / (t1 - t0) if t1 > t0 and d1 > d0 else float("nan")

    def eta(self) -> float:
        rate = self.rate()
        return (self.total - self.done) / rate if rate > 0 else float("nan")

    def percent(self) -> int:
        return int(100 * min(self.done, self.total) / self.total)

    # -------------------------------------------------------------- text

    def line(self) -> str:
        """The plain line: 'step 1200/5000 (24%) EXTRA | 3.21 steps/s, ETA 19m44s'."""
        text = f"{self.label} {self.done}/{self.total} ({self.percent()}%)"
        if self.extra:
            text += f" {self.extra}"
        return (f"{text} | {format_rate(self.rate(), self.unit)}, "
                f"ETA {format_duration(self.eta())}")

    def bar_text(self, width: int) -> str:
        """'step 1200/5000 [####......] 24% EXTRA | 3.2 steps/s ETA 19m44s', cut to width
        (EXTRA first)."""
        slots = 20 if width >= MAX_WIDTH - 1 else 10
        filled = int(slots * min(self.done, self.total) / self.total)
        head = (f"{self.label} {self.done}/{self.total} [{'#' * filled}{'.' * (slots - filled)}]"
                f" {self.percent():3d}%")
        tail = f" | {format_rate(self.rate(), self.unit)} ETA {format_duration(self.eta())}"
        extra = f" {self.extra}" if self.extra else ""
        room = width - len(head) - len(tail)
        if len(extra) > room:  # the losses give way first
            extra = extra[:room - 1] + "~" if room >= 2 else ""
        return (head + extra + tail)[:width]

    # -------------------------------------------------------------- output

    def update(self, done: int, extra: str = "") -> None:
        now = time.monotonic()
        self.done, self.extra = int(done), extra
        self._window.append((now, self.done))
        if self.mode == "bar":
            if now - self._last_draw >= BAR_REDRAW_SECONDS or self.done >= self.total:
                self.redraw()
        elif self.mode == "lines":
            last_time, last_done = self._last_line
            due = ((self.every is not None
                    and self.done // self.every > last_done // self.every)
                   or (self.seconds is not None and now - last_time >= self.seconds))
            if due and self.done < self.total:
                self._print_line(now)

    def _print_line(self, now: float) -> None:
        self._last_line = (now, self.done)
        self._emit(self.line())

    def redraw(self) -> None:
        global _active
        if self.mode != "bar" or self._closed:
            return
        text = self.bar_text(bar_width(self.stream))
        self.stream.write("\r" + text + " " * max(self._drawn - len(text), 0))
        self.stream.flush()
        self._drawn, self._last_draw = len(text), time.monotonic()
        _active = self

    def clear(self) -> None:
        if self.mode == "bar" and self._drawn:
            self.stream.write("\r" + " " * self._drawn + "\r")
            self.stream.flush()
            self._drawn = 0

    def message(self, text: str) -> None:
        """A line of its own (above the bar on a terminal)."""
        if self.mode != "none":
            self._emit(text)

    def close(self, final: str | None = None) -> None:
        """Ends the bar (or the lines) with `final`, or with the last state."""
        global _active
        if self._closed:
            return
        if self.mode == "bar":
            if final is None:  # the finished bar stays on screen
                self.redraw()
                self.stream.write("\n")
                self.stream.flush()
            else:
                self.clear()
            self._closed = True
            if _active is self:
                _active = None
            if final is not None:
                self._emit(final)
        elif self.mode == "lines":
            self._closed = True
            if final is not None:
                self._emit(final)
            elif self._last_line[1] != self.done:
                self._print_line(time.monotonic())
        self._closed = True
