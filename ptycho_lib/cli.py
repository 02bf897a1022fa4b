"""Shared behaviour of the stage scripts: their argument parsers, logging set-up and
one-line errors."""

from __future__ import annotations

import argparse
import logging
import sys
import traceback
from pathlib import Path

from . import config
from .io import InputError


def parser(doc: str, *files: tuple[str, str], program: str | None = None) -> argparse.ArgumentParser:
    """A parser showing the script's docstring, with positional file arguments (name,
    help) and, for a `program`, a flag for each of its settings (ptycho_lib.config)."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    for name, help in files:
        p.add_argument(name, type=Path, help=help)
    if program:
        config.add_arguments(p, program)
        p.set_defaults(_program=program)
    return p


def parse(p: argparse.ArgumentParser, argv) -> tuple[argparse.Namespace, dict]:
    """The arguments and the settings of the parser's program: defaults < --config
    files < flags."""
    a = p.parse_args(argv)
    return a, config.build(a, a._program)


def run(main, argv=None) -> None:
    """Call main(argv); turn expected failures into one line on stderr and exit 1.
    With --debug the traceback is shown too."""
    argv = sys.argv[1:] if argv is None else argv
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    # the extra processes of a distributed run repeat the command line: only warnings from them
    logging.basicConfig(level=logging.WARNING if config.is_launcher_child() else logging.INFO,
                        format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        main(argv)
    except (InputError, ValueError, RuntimeError, OSError, MemoryError) as e:
        if debug:
            traceback.print_exc()
        if isinstance(e, (MemoryError, RecursionError)):  # their messages name no file: name the input
            subject = next((a for a in argv if not a.startswith("-") and Path(a).exists()), "input")
            what = "not enough memory" if isinstance(e, MemoryError) else "nested too deeply"
            e = f"{subject}: {what}" + (f" ({e})" if str(e) else "")
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
