"""Shared behaviour of the stage scripts: logging set-up and one-line errors."""

from __future__ import annotations

import logging
import sys
import traceback

from .config import is_launcher_child
from .io import InputError


def run(main, argv=None) -> None:
    """Call main(argv); turn expected failures into one line on stderr and exit 1.
    With --debug the traceback is shown too."""
    argv = sys.argv[1:] if argv is None else argv
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    # the extra processes of a distributed run repeat the command line: only warnings from them
    logging.basicConfig(level=logging.WARNING if is_launcher_child() else logging.INFO,
                        format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        main(argv)
    except (InputError, ValueError, RuntimeError, OSError, MemoryError) as e:
        if debug:
            traceback.print_exc()
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
