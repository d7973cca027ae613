"""``crowdwatch bench NAME``: benchmarks, one module per benchmark, found automatically.

To add one, drop a module ``crowdwatch/bench/NAME.py`` that defines::

    SUMMARY = "one line for --help"
    EXTRAS = ("server",)   # the pip extras it needs (crowdwatch.extras): checked before run

    def add_arguments(parser: argparse.ArgumentParser) -> None: ...
    def run(args: argparse.Namespace) -> int: ...   # exit status; last stdout line = JSON

Keep heavy imports inside ``run`` (``add_arguments`` too is called for ``crowdwatch --help``),
so that every install, even one without OpenCV or psycopg, can list the benchmarks, and an
edge box can run the ones it has the libraries for.
Modules whose name starts with ``_`` are helpers, not benchmarks.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast


@dataclass(frozen=True, slots=True)
class Benchmark:
    name: str
    summary: str
    extras: tuple[str, ...]
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def benchmarks() -> list[Benchmark]:
    """Every benchmark module of this package, by name."""
    found: list[Benchmark] = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        found.append(
            Benchmark(
                name=info.name,
                summary=cast(str, module.SUMMARY),
                extras=cast(tuple[str, ...], module.EXTRAS),
                add_arguments=module.add_arguments,
                run=module.run,
            )
        )
    return found


def add_parsers(bench: argparse.ArgumentParser) -> None:
    """Add one sub-subcommand per benchmark to the ``bench`` parser.

    Args:
        bench: the parser of ``crowdwatch bench``; each sub-parser sets ``bench_run`` and
            ``extras``.
    """
    sub = bench.add_subparsers(dest="benchmark", required=True, metavar="BENCHMARK")
    for item in benchmarks():
        parser = sub.add_parser(
            item.name,
            help=item.summary,
            description=item.summary,
            epilog=f"Needs: pip install 'crowdwatch[{','.join(item.extras)}]'",
        )
        item.add_arguments(parser)
        parser.set_defaults(bench_run=item.run, extras=item.extras)
