"""ecgcore.cli: the one command-line entry point (``ecgcore`` and ``python -m ecgcore``).

Each subcommand is a small module of this package exposing ``add_parser(sub)``
and ``run(args) -> int``. Subcommands call only the public library API.
Exit codes: 0 success, 1 some inputs failed (each named on stderr), 2 usage error.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from ecgcore._version import __version__

# subcommand -> module; a module that is absent (a later issue) is simply not offered.
COMMANDS = {
    "info": "ecgcore.cli.info",
    "convert": "ecgcore.cli.convert",
    "simulate": "ecgcore.cli.simulate",
    "presets": "ecgcore.cli.presets",
    "preprocess": "ecgcore.cli.preprocess",
    "delineate": "ecgcore.cli.delineate",
    "measure": "ecgcore.cli.measure",
    "plot": "ecgcore.cli.plot",
    "digitize": "ecgcore.cli.digitize",
    "train": "ecgcore.cli.train",
    "evaluate": "ecgcore.cli.evaluate",
    "predict": "ecgcore.cli.predict",
    "images": "ecgcore.cli.images",
    "study": "ecgcore.cli.study",
    "convert-checkpoint": "ecgcore.cli.convert_checkpoint",
    "serve": "ecgcore.cli.serve",
    "demo": "ecgcore.cli.demo",
}


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # usage errors exit 2, with the usage line
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ecgcore",
                     description="12-lead ECG toolkit: read, convert, preprocess, delineate, "
                                 "digitize and model ECGs at biobank scale.")
    parser.add_argument("--version", action="version", version=f"ecgcore {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, modname in COMMANDS.items():
        try:
            mod = importlib.import_module(modname)
        except ModuleNotFoundError as exc:
            if exc.name == modname:
                continue
            raise
        p = mod.add_parser(sub)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
