"""The one line that names a missing extra, and ``crowdwatch`` printing it instead of a traceback.

The installs themselves (a venv per extra) are ``tests/test_install_extras.py``; here the
messages and the two places ``main()`` gives them, with the extras table or a handler as
the seam.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import pytest

import crowdwatch.evaluation.count_command as count_command
from crowdwatch.cli import main
from crowdwatch.extras import EXTRA_PARTS, Part, extra_closure, missing_module_message


@pytest.mark.parametrize(
    ("extras", "closure"),
    [
        ((), []),
        (("server",), ["server"]),
        (("eval",), ["edge", "eval"]),
        (("train",), ["edge", "eval", "ultralytics", "train"]),
        (("demo", "eval"), ["edge", "server", "reports", "demo", "eval"]),
    ],
)
def test_an_extra_brings_the_extras_it_includes(
    extras: tuple[str, ...], closure: list[str]
) -> None:
    assert extra_closure(extras) == closure


@pytest.mark.parametrize(
    ("command", "module", "extras", "message"),
    [
        ("eval", "cv2", ("eval",), "crowdwatch eval needs OpenCV: pip install 'crowdwatch[eval]'"),
        (
            "count",
            "scipy.io",
            ("edge",),
            "crowdwatch count needs SciPy: pip install 'crowdwatch[eval]'",
        ),
        (
            "bench edge",
            "torch",
            ("edge", "ultralytics"),
            "crowdwatch bench edge needs torch: pip install 'crowdwatch[edge,ultralytics]'",
        ),
        (
            "dashboards push",
            "niquests",
            ("server", "grafana"),
            "crowdwatch dashboards push needs the module niquests: "
            "pip install 'crowdwatch[server,grafana]'",
        ),
        (
            "config",
            "annotated_types.x",
            (),
            "crowdwatch config needs the module annotated_types: "
            "pip install --force-reinstall crowdwatch",
        ),
    ],
)
def test_a_missing_module_names_the_extra_that_brings_it(
    command: str, module: str, extras: tuple[str, ...], message: str
) -> None:
    assert missing_module_message(command, module, extras) == message


def test_a_missing_extra_is_named_before_the_config_is_read(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(
        EXTRA_PARTS, "grafana", (Part("crowdwatch_no_such_module", "Grafana's client"),)
    )
    assert main(["dashboards", "push", "-c", "no-such.yaml", "--url", "http://g"]) == 2
    out = capsys.readouterr()
    assert out.out == ""
    assert out.err == (
        "crowdwatch dashboards push needs Grafana's client: pip install 'crowdwatch[server,grafana]'\n"
    )
    # generate needs only [server]: it goes on, to the config that is not there
    assert main(["dashboards", "generate", "-c", "no-such.yaml"]) == 2
    assert "no-such.yaml" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("missing", "message"),
    [
        ("lap", "crowdwatch count needs lap: pip install 'crowdwatch[ultralytics]'\n"),
        ("cv2.dnn", "crowdwatch count needs OpenCV: pip install 'crowdwatch[edge]'\n"),
    ],
)
def test_a_module_missing_while_a_command_runs_is_one_line(
    missing: str,
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def run(args: argparse.Namespace, *rest: object) -> int:
        raise ModuleNotFoundError(f"No module named '{missing}'", name=missing)

    monkeypatch.setattr(count_command, "run", run)
    assert main(["count", "x.png"]) == 2
    assert capsys.readouterr().err == message


def test_a_module_of_ours_missing_is_a_bug_not_an_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    def run(args: argparse.Namespace, *rest: object) -> int:
        raise ModuleNotFoundError("No module named 'crowdwatch.gone'", name="crowdwatch.gone")

    monkeypatch.setattr(count_command, "run", run)
    with pytest.raises(ModuleNotFoundError, match=r"crowdwatch\.gone"):
        main(["count", "x.png"])


def test_the_parser_loads_no_heavy_library() -> None:
    """What ``crowdwatch --help`` imports: the contracts, none of any extra's libraries.

    The venvs of ``test_install_extras.py`` prove it where the libraries are absent; this
    keeps the quick ``-m 'not slow'`` run honest too, where they are all installed.
    """
    heavy = sorted({p.module for parts in EXTRA_PARTS.values() for p in parts} | {"starlette"})
    code = (
        "import json, sys\n"
        "from crowdwatch.cli import _build_parser\n"
        "_build_parser()\n"
        f"print(json.dumps([m for m in {heavy!r} if m in sys.modules]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert json.loads(done.stdout) == []
