"""What the command-line tools share: flag parsing with one-line errors."""

from __future__ import annotations

import sys


def one_line(e: BaseException) -> str:
    """The first non-empty line of an exception's message (or its type's name)."""
    lines = [line for line in str(e).strip().splitlines() if line.strip()]
    return lines[0] if lines else type(e).__name__


def parse_flags(flag_values, argv, doc: str):
    """Parses argv into a private absl FlagValues. Returns None to go on, or the exit
    status: 0 after printing help, 2 after a one-line usage error on stderr."""
    from absl import flags

    if any(a in ("-h", "--help", "-help", "--helpfull") for a in argv[1:]):
        print(f"{doc.strip()}\n\nflags:\n{flag_values.get_help()}")
        return 0
    try:
        flag_values(list(argv))
    except flags.Error as e:
        print(f"error: {one_line(e)}", file=sys.stderr)
        return 2
    return None
