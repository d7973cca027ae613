"""The ``crowdwatch`` command: one subcommand per process.

Each subcommand imports its component lazily, so an edge box with only ``crowdwatch[edge]``
installed can run ``crowdwatch edge`` without the server-side libraries, and a server without
OpenCV can run ``crowdwatch ingest``. Building the parser imports nothing beyond the contracts:
every install can print every command's help. A command whose extra is missing ends with one
line naming it (:mod:`crowdwatch.extras`), before it reads its config or starts anything.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from crowdwatch import __version__
from crowdwatch.contracts.config import CrowdwatchConfig, load_config
from crowdwatch.contracts.errors import ConfigError, CrowdwatchError
from crowdwatch.extras import missing_module_message, missing_part

logger = logging.getLogger("crowdwatch")

CONFIG_HELP = (
    "site config YAML (default: $CROWDWATCH_CONFIG, else configs/district.example.yaml in the "
    "current folder). Secrets come from the environment: CROWDWATCH_DATABASE_URL, "
    "CROWDWATCH_MQTT_PASSWORD."
)

_DESCRIPTIONS = {
    "edge": (
        "Count people on real cameras and publish counts over MQTT.\n\n"
        "Reads the 'detector' section (model path, confidence, iou, input_size, threads), 'edge' "
        "(interval_s, detect_every, dense: the crowd counter for zones in mode dense/auto), 'mqtt', "
        "and each selected camera (source, frame_size, zones with mode detect|dense|auto). "
        "Cameras whose source is 'simulated' are left to `crowdwatch simulate`."
    ),
    "ingest": (
        "Subscribe to every camera's counts and status and write them to PostgreSQL.\n\n"
        "Reads 'mqtt' (host, port, topic_prefix, protocol, shared_group: ingest workers of one "
        "group share the load) and 'database' (or CROWDWATCH_DATABASE_URL). As the owner (one URL) "
        "it creates or upgrades the schema at start and keeps partitions, rollups and retention; "
        "with its own database.ingest_url it only checks the schema and leaves that upkeep to "
        "`crowdwatch db maintain`. Invalid messages go to the dead_letters table with the reason."
    ),
    "alerts": (
        "Evaluate the alert rules on each count message and on the latest counts; record alerts,\n"
        "notify the departments' channels, escalate unacknowledged alerts.\n\n"
        "Reads 'alerts' (evaluate_every_s, stale_after_s, rules: metric occupancy_ratio|people|"
        "longest_wait_min|rise|forecast_occupancy|density_per_m2|no_data_s, fire_at, clear_at, "
        "for_s, keep_firing_for_s, severity, site_kinds, sites, overrides, mute_windows; kind_rules: "
        "each site kind's standard rules too; channels; "
        "routes; mute_windows; delivery; reference_days; lease_s), 'database' and 'mqtt'. "
        "Several engines may run: one holds the lease, the others stand by."
    ),
    "web": (
        "Serve the pages and the JSON API: the phone page /, the wall /wall, the dispatcher page\n"
        "/dispatch (login), live updates /api/stream (Server-Sent Events), /api/sites, /api/alerts,\n"
        "/healthz.\n\n"
        "Reads 'web' (host, port (0 = a free port), users with name, department and password_hash\n"
        "(python -m crowdwatch.dashboards.passwords prints one), session_ttl_s) and 'database'.\n"
        "Set CROWDWATCH_WEB_SECRET (16+ characters) so dispatcher logins survive a restart."
    ),
    "simulate": (
        "Publish realistic holiday counts for every camera whose source is 'simulated'.\n\n"
        "Uses the same MQTT contract as a real edge worker; reads 'district.timezone', 'edge."
        "interval_s', 'mqtt' and the simulated cameras' zones and capacities."
    ),
    "reports": (
        "The daily index report: visitors per beach and spot against the same holiday day last\n"
        "year, peaks, time above the warning levels, busiest bus stops, alerts by department.\n\n"
        "render: write the day's PNG, PDF and CSV; send: send the poster to reports.channels now;\n"
        "schedule: send each day's report at reports.send_at (local time) until stopped, once:\n"
        "the days sent are kept in the database, so a restart neither resends nor skips one;\n"
        "backtest --day D --until D: the alert forecast against persistence and the same hour\n"
        "last holiday, over the holidays between.\n"
        "Reads 'reports' (levels, area_per_person_m2, mean_stay_min, opening, sites, holidays,\n"
        "send_at, channels, public_url), 'alerts.channels', 'district.timezone' and 'database'."
    ),
    "demo": (
        "Run the whole district on this machine: embedded PostgreSQL and MQTT broker (unless "
        "given), an edge worker on real footage, the simulator for the other sites, ingest, "
        "alerts and the web page. Prints where to look; Ctrl-C stops everything."
    ),
    "db": (
        "Database schema: `crowdwatch db upgrade` creates or upgrades it and syncs the sites.\n\n"
        "`crowdwatch db refresh` brings the 1 min / 15 min / 1 h rollups up to date; `crowdwatch "
        "db retention` drops raw days older than database.retention.raw_days, rollups older "
        "than rollup_days and dead letters older than dead_letter_days. `crowdwatch db "
        "maintain` does both and creates the coming days' "
        "partitions, in a loop (--once: one round): the owner's upkeep, which ingest does itself "
        "only when it connects with database.url. `crowdwatch db roles` creates the groups "
        "{roles_prefix}_ingest, _web, _alerts with least privilege, and the login users of "
        "database.ingest_url, web_url, alerts_url (passwords from the URL, written ${ENV}). "
        "Every action connects with database.url (or CROWDWATCH_DATABASE_URL): the owner's."
    ),
    "config": "Validate a config file and print a summary of the district.",
    "security": (
        "Security material from the site config.\n\n"
        "`crowdwatch security mosquitto-config --out DIR` writes mosquitto.conf, passwd (PBKDF2 "
        "hashes), acl and credentials.tsv (0600, clear passwords for the installer): one account "
        "per real camera (edge-SITE-CAMERA, may publish only under its own topics, reads "
        "nothing), crowdwatch-ingest, crowdwatch-alerts, crowdwatch-simulator. Anonymous access "
        "is off; --tls-cert/--tls-key/--tls-ca add a TLS listener. Rerunning rotates every password."
    ),
    "count": (
        "Count people in images, image folders or videos with the edge's detector.\n\n"
        "One line per analysed frame (with --json one JSON object: source, frame, count, width, "
        "height, ms). Detector settings come from --config's 'detector' section when a config "
        "is given (else the shared yolo11n_coco_640.onnx), overridden by --model, --input-size, "
        "--confidence, --tiles, --backend. --zone counts only people whose feet are inside it.\n\n"
        "--mode dense counts with the crowd counter's density map instead (--dense-model, else "
        "the config's edge.dense.model, else models/crowd_counter.onnx); --mode auto runs both "
        "and picks per frame by the edge's edge.dense.auto rule, as a zone in mode auto does."
    ),
    "train": (
        "Train our own models. 'counter': the crowd counter (density map) on ShanghaiTech A/B "
        "train_data and Mall frames 1-640 from $CROWDWATCH_SHARED_DIR; needs torch "
        "(pip install 'crowdwatch[train]'). Arguments after 'counter' go to the trainer "
        "(crowdwatch train counter --help), e.g.\n\n"
        "  crowdwatch train counter --steps 12000 --minutes 95 --seed 0 --out runs/counter\n\n"
        "It writes checkpoint.pt (resume with --resume), train_log.jsonl and "
        "crowd_counter.onnx; copy the ONNX file to models/ to ship it.\n\n"
        "With --adapt DIR --camera SITE/CAM it adapts the shipped counter to one camera's "
        "labelled frames instead (crowdwatch capture, crowdwatch label): a gain per region of "
        "the frame, a decoder fine-tune or both, whichever has the lowest leave-one-out error; "
        "it writes models/cameras/SITE/CAM/crowd_counter.onnx (and crowd_counter.correction.json "
        "beside it) and its card, or refuses when it is not "
        "clearly better than the shipped counter on frames it never saw (crowdwatch train "
        "counter --adapt DIR --camera SITE/CAM --help)."
    ),
    "capture": (
        "Keep a camera's raw frames in DIR on this machine, to label them (crowdwatch label) and "
        "teach the crowd counter this camera (crowdwatch train counter --adapt). Nothing is "
        "published: no MQTT connection is made; DIR is readable by its owner only. Frames are "
        "named by their unix time, e.g.\n\n"
        "  crowdwatch capture --camera beach-north/cam-1 --every 30m --count 20 frames/beach-north\n\n"
        "A camera that gives no frame at the first shot stops the command with one line; a shot "
        "missed later is logged and skipped."
    ),
    "label": (
        "Serve a local page to mark every person on the frames in DIR (click a head; zoom with "
        "the wheel or +/-, drag to pan, right-click or Shift+click deletes, Z undoes, N/P change "
        "frame, E marks a frame empty). Every change is saved to DIR/points.csv "
        "(image,annotator,x,y) and DIR/counts.json; a makesense.ai point export in DIR is read "
        "too. Listens on 127.0.0.1 (the frames stay on this machine), e.g.\n\n"
        "  crowdwatch label frames/beach-north --annotator ana   # open http://127.0.0.1:8095/"
    ),
    "eval": (
        "Measure the counter on the ground truth under $CROWDWATCH_SHARED_DIR/data: PETS 2009 "
        "S2L1, Mall frames 1-800, ShanghaiTech B test, beach_webcam_a (MAE, RMSE, MAE as % of "
        "the mean count, ms/frame) and PETS line crossing. Uses the per-scene detector settings "
        "of crowdwatch.evaluation.settings; data sets that are absent are skipped with a "
        "message.\n\n"
        "--methods detect,dense (default: both when the density model exists) reports the "
        "crowd counter (--dense-model, default models/crowd_counter.onnx) beside detection. It "
        "is never scored on the frames it was trained on: on Mall it gets frames 641-800 only, "
        "and detection gets a row on those same frames."
    ),
    "bench": (
        "Benchmarks: `crowdwatch bench NAME --help`. Each prints its figures beside a baseline "
        "measured in the same run and ends with one JSON line."
    ),
    "dashboards": (
        "Grafana dashboards (the command-center wall and the per-site drill-down) as code.\n\n"
        "`crowdwatch dashboards generate [--out configs/grafana]` rewrites the provisioning "
        "files (PostgreSQL data source, dashboard provider, dashboard JSON) from the config's "
        "district and sites. `crowdwatch dashboards push --url URL --token TOKEN` creates or "
        "updates the folder, data source and dashboards through Grafana's HTTP API; the token "
        "may come from CROWDWATCH_GRAFANA_TOKEN, the database Grafana should use from "
        "--datasource-url or CROWDWATCH_GRAFANA_DATABASE_URL (else database.url), its password "
        "from CROWDWATCH_GRAFANA_DB_PASSWORD when set."
    ),
}


EXTRAS: dict[str, tuple[str, ...]] = {
    "edge": ("edge",),
    "ingest": ("server",),
    "alerts": ("server",),
    "web": ("server",),
    "simulate": (),
    "reports": ("server", "reports"),
    "demo": ("demo",),
    "db": ("server",),
    "config": (),
    "security": (),
    "dashboards": ("server",),
    "dashboards push": ("server", "grafana"),
    "count": ("edge",),
    "eval": ("eval",),
    "train": ("train",),
    "capture": ("edge",),
    # The label page is the standard library's HTTP server and a static page: every install.
    "label": (),
    # Each benchmark declares its own (crowdwatch/bench/NAME.py: EXTRAS).
    "bench": (),
}
"""The pip extras each command needs ("COMMAND ACTION" where one action needs more)."""


def _default_config_path() -> Path:
    env = os.environ.get("CROWDWATCH_CONFIG")
    return Path(env) if env else Path("configs/district.example.yaml")


def _stop_event() -> threading.Event:
    """An event set by SIGINT/SIGTERM so every long-running loop ends cleanly."""
    stop = threading.Event()

    def handle(signum: int, frame: FrameType | None) -> None:
        logger.info("received %s, stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGINT, handle)
    signal.signal(signal.SIGTERM, handle)
    return stop


def _cmd_edge(config: CrowdwatchConfig, args: argparse.Namespace) -> int:
    from crowdwatch.edge.service import run_edge

    run_edge(config, args.camera or None, _stop_event())
    return 0


def _cmd_ingest(config: CrowdwatchConfig, args: argparse.Namespace) -> int:
    from crowdwatch.ingest.service import run_ingest

    run_ingest(
        config,
        _stop_event(),
        worker=args.worker,
        metrics_port=args.metrics_port,
        metrics_host=args.metrics_host,
    )
    return 0


def _cmd_alerts(config: CrowdwatchConfig, args: argparse.Namespace) -> int:
    from crowdwatch.analytics.engine import run_alerts

    run_alerts(config, _stop_event())
    return 0


def _cmd_web(config: CrowdwatchConfig, args: argparse.Namespace) -> int:
    from crowdwatch.dashboards.web import run_web

    host = args.host or config.web.host
    port = config.web.port if args.port is None else args.port
    run_web(config, host, port, _stop_event())
    return 0


def _cmd_simulate(config: CrowdwatchConfig, args: argparse.Namespace) -> int:
    if args.history is not None:
        return _cmd_simulate_history(config, args)
    from crowdwatch.simulator.service import run_simulator, start_today

    start = start_today(args.start, config.district.timezone) if args.start else None
    run_simulator(config, _stop_event(), speed=args.speed, start=start, seed=args.seed)
    return 0


def _cmd_simulate_history(config: CrowdwatchConfig, args: argparse.Namespace) -> int:
    missing = missing_part("simulate --history", ("server", "reports"))
    if missing is not None:
        print(missing, file=sys.stderr)
        return 2
    from datetime import date, timedelta

    from crowdwatch.reports.holidays import HolidayCalendar
    from crowdwatch.simulator.history import compared_days, fill_history

    last = date.fromisoformat(args.until) if args.until else date.today() - timedelta(days=1)
    if args.compared:
        # The days this week's reports compare with (last year, last holiday, a weekend).
        calendar = HolidayCalendar(config.reports.holidays)
        days = compared_days(calendar, last + timedelta(days=1), back=args.history)
    else:
        days = [last - timedelta(days=i) for i in range(args.history)]
    result = fill_history(config, config.database.resolved_url(), days, seed=args.seed)
    print(
        f"simulated history of {result.days} days {result.first_day}..{result.last_day}: "
        f"{result.zone_rows} zone rows, {result.line_rows} line rows, "
        f"{result.rollup_minutes} rollup minutes (simulated data)"
    )
    return 0


def _cmd_reports(config: CrowdwatchConfig, args: argparse.Namespace) -> int:
    from datetime import date

    url = config.database.resolved_url()
    if args.action == "backtest":
        return _cmd_reports_backtest(config, url, args)
    if args.action == "schedule":
        from crowdwatch.reports.sender import run_schedule

        run_schedule(config, url, _stop_event())
        return 0
    from crowdwatch.reports.sender import prepare, send_report

    day = date.fromisoformat(args.day) if args.day else date.today()
    outgoing = prepare(config, url, day)
    if args.action == "render":
        from crowdwatch.reports.tables import report_csv

        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        stem = f"report-{day.isoformat()}"
        (out / f"{stem}.png").write_bytes(outgoing.png)
        (out / f"{stem}.pdf").write_bytes(outgoing.pdf)
        (out / f"{stem}.csv").write_bytes(report_csv(outgoing.report))
        print(f"wrote {out / stem}.png, .pdf, .csv")
        return 0
    results = send_report(config, outgoing)
    for channel_id, problem in results.items():
        print(f"{channel_id}: {'sent' if problem is None else problem}")
    return 0 if all(p is None for p in results.values()) else 1


def _cmd_reports_backtest(config: CrowdwatchConfig, url: str, args: argparse.Namespace) -> int:
    from datetime import date, timedelta

    from crowdwatch.reports.backtest import backtest
    from crowdwatch.reports.holidays import DayKind, HolidayCalendar
    from crowdwatch.storage.db import connect

    if not args.day or not args.until:
        print("crowdwatch reports backtest needs --day FIRST and --until LAST", file=sys.stderr)
        return 2
    first, last = date.fromisoformat(args.day), date.fromisoformat(args.until)
    calendar = HolidayCalendar(config.reports.holidays)
    days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    holidays = [d for d in days if calendar.day(d).kind is DayKind.HOLIDAY]
    with connect(url, autocommit=True) as conn:
        scores = backtest(conn, config, holidays, calendar=calendar)
    print(f"forecast backtest on {len(holidays)} holiday days {first}..{last} (15-minute means)")
    print(f"{'horizon':>8} {'method':<14} {'cases':>7} {'MAE people':>11} {'MAE % cap':>10}")
    for score in scores:
        print(
            f"{score.horizon_min:>6} m {score.method:<14} {score.cases:>7} "
            f"{score.mae:>11.1f} {score.mae_share * 100:>9.1f}%"
        )
    print(
        "On a history written by `crowdwatch simulate --history` these figures describe the "
        "simulator's curves, not a real beach."
    )
    return 0 if scores else 1


def _cmd_db(config: CrowdwatchConfig, args: argparse.Namespace) -> int:
    from crowdwatch.storage.migrate import upgrade

    if args.action in ("refresh", "retention"):
        return _cmd_db_maintenance(config, args.action)
    if args.action == "roles":
        return _cmd_db_roles(config)
    if args.action == "maintain":
        return _cmd_db_maintain(config, once=args.once)
    version = upgrade(config.database.resolved_url(), config)
    print(f"database schema at version {version}")
    return 0


def _cmd_db_maintenance(config: CrowdwatchConfig, action: str) -> int:
    from crowdwatch.storage.db import connect
    from crowdwatch.storage.dead_letters import expire_dead_letters
    from crowdwatch.storage.retention import apply_retention
    from crowdwatch.storage.rollups import refresh_rollups

    retention = config.database.retention
    with connect(config.database.resolved_url(), autocommit=True) as conn:
        if action == "refresh":
            result = refresh_rollups(conn, retention=retention)
            if result.busy:
                # Not a failure: the other refresher does the same work.
                print("rollups not refreshed: another process is refreshing them right now")
            else:
                print(f"rollups refreshed: {result.minutes} minutes recomputed")
        else:
            done = apply_retention(conn, retention)
            expired = expire_dead_letters(conn, retention)
            print(
                f"retention applied: {len(done.dropped_partitions)} partitions dropped, "
                f"{done.rollup_rows_deleted} rollup rows deleted, {expired} dead letters expired"
            )
    return 0


def _cmd_db_roles(config: CrowdwatchConfig) -> int:
    from crowdwatch.storage.db import connect
    from crowdwatch.storage.migrate import upgrade
    from crowdwatch.storage.roles import setup_roles

    url = config.database.resolved_url()
    upgrade(url, config)
    with connect(url, autocommit=True) as conn:
        report = setup_roles(conn, config.database)
    for group in report.groups_created:
        print(f"created group role {group}")
    for user, group in report.logins:
        print(f"login {user} -> {group}")
    print(f"privileges granted to {', '.join(report.granted)} groups")
    return 0


def _cmd_db_maintain(config: CrowdwatchConfig, *, once: bool) -> int:
    from crowdwatch.storage.maintenance import run_maintenance

    # One round needs no signal handling: Ctrl-C ends it like any command.
    result = run_maintenance(config, threading.Event() if once else _stop_event(), once=once)
    if result is not None:
        print(
            f"maintenance: {len(result.partitions)} partitions created, "
            f"{result.rollups.minutes} rollup minutes recomputed, "
            f"{len(result.retention.dropped_partitions)} partitions dropped, "
            f"{result.dead_letters_expired} dead letters expired"
        )
    return 0


def _cmd_dashboards(config: CrowdwatchConfig, args: argparse.Namespace) -> int:
    from crowdwatch.dashboards.grafana.provisioning import DataSourceSettings, write_provisioning

    if args.action == "generate":
        written = write_provisioning(
            config, Path(args.out), dashboards_path=args.dashboards_path, sslmode=args.sslmode
        )
        print(f"wrote {len(written)} Grafana provisioning files under {args.out}")
        return 0
    from crowdwatch.dashboards.grafana.push import TOKEN_ENV, push_dashboards

    if not args.url:
        print("crowdwatch dashboards push: error: --url is required", file=sys.stderr)
        return 2
    db_url = (
        args.datasource_url
        or os.environ.get("CROWDWATCH_GRAFANA_DATABASE_URL")
        or config.database.resolved_url()
    )
    settings = DataSourceSettings.from_url(
        db_url, password=os.environ.get("CROWDWATCH_GRAFANA_DB_PASSWORD")
    )
    token = args.token or os.environ.get(TOKEN_ENV, "")
    result = push_dashboards(config, args.url, token, settings)
    for kind, uid, action in result.actions:
        print(f"{kind} {uid}: {action}")
    return 0


def _cmd_security(config: CrowdwatchConfig, args: argparse.Namespace) -> int:
    from crowdwatch.security.mosquitto_config import TlsFiles, write_mosquitto_files

    tls_paths = (args.tls_ca, args.tls_cert, args.tls_key)
    if any(tls_paths) and not all(tls_paths):
        raise ConfigError("--tls-ca, --tls-cert and --tls-key go together")
    tls = TlsFiles(*(Path(p) for p in tls_paths)) if all(tls_paths) else None
    files = write_mosquitto_files(
        config,
        Path(args.out),
        port=args.port,
        bind=args.bind,
        tls=tls,
        tls_port=args.tls_port,
        persistence_dir=Path(args.persistence_dir) if args.persistence_dir else None,
    )
    print(
        f"{len(files.accounts)} MQTT accounts: {files.config}, {files.password_file}, {files.acl_file}"
    )
    print(f"passwords for the installer (mode 0600): {files.credentials}")
    return 0


def _cmd_config(config: CrowdwatchConfig, args: argparse.Namespace) -> int:
    cams = config.cameras()
    real = [f"{s.id}/{c.id}" for s, c in cams if not c.simulated]
    zones = sum(len(c.zones) for _, c in cams)
    print(f"{config.district.name.zh} {config.district.name.en}: config OK")
    print(f"  {len(config.sites)} sites, {len(cams)} cameras, {zones} zones")
    print(f"  real cameras: {', '.join(real) or 'none'}")
    print(f"  alert rules: {', '.join(r.id for r in config.alerts.rules) or 'none'}")
    return 0


def _cmd_bench(config: CrowdwatchConfig | None, args: argparse.Namespace) -> int:
    # Benchmarks build their own district (or read --config themselves).
    result: int = args.bench_run(args)
    return result


def _cmd_count(config: CrowdwatchConfig | None, args: argparse.Namespace) -> int:
    from crowdwatch.evaluation.count_command import run

    if config is None:
        return run(args)
    return run(args, config.detector, config.edge.dense)


def _cmd_eval(config: CrowdwatchConfig | None, args: argparse.Namespace) -> int:
    from crowdwatch.evaluation.eval_command import run

    return run(args)


def _cmd_capture(config: CrowdwatchConfig, args: argparse.Namespace) -> int:
    from crowdwatch.edge.service import select_cameras
    from crowdwatch.labeling.capture import capture, parse_every

    try:
        every_s = parse_every(args.every)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if args.count < 1:
        raise ConfigError(f"--count: expected at least 1 frame, got {args.count}")
    ((site, camera),) = select_cameras(config, [args.camera])
    result = capture(
        args.camera, camera, Path(args.dir), every_s=every_s, count=args.count, stop=_stop_event()
    )
    missed = f"; {len(result.missed)} missed ({result.missed[-1]})" if result.missed else ""
    print(
        f"kept {len(result.saved)} of {args.count} frames of {site.id}/{camera.id} in {args.dir}{missed}"
    )
    return 0 if result.saved else 1


def _cmd_label(config: CrowdwatchConfig | None, args: argparse.Namespace) -> int:
    from crowdwatch.labeling.label_server import LabelStore, make_server

    store = LabelStore(Path(args.dir), args.annotator)
    server = make_server(store, args.host, args.port)
    host, port = str(server.server_address[0]), int(server.server_address[1])
    print(
        f"labelling {len(store.frames)} frames of {args.dir} as {store.annotator}: http://{host}:{port}/",
        flush=True,
    )
    stop = _stop_event()
    thread = threading.Thread(target=server.serve_forever, name="label server", daemon=True)
    thread.start()
    try:
        stop.wait()
    finally:
        server.shutdown()
        server.server_close()
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    # Imported here: torch loads only for training, never for the other commands.
    from crowdwatch.training.train_counter import main as train_counter

    if any(arg == "--adapt" or arg.startswith("--adapt=") for arg in args.train_args):
        # One camera's fine-tune from its own labelled frames (crowdwatch.training.adapt).
        from crowdwatch.training.adapt import main as adapt_counter

        return adapt_counter(args.train_args)
    train_counter(args.train_args)
    return 0


def _optional_config(args: argparse.Namespace) -> CrowdwatchConfig | None:
    """The config for commands that work without one (count, eval): only when given."""
    path = args.config or os.environ.get("CROWDWATCH_CONFIG")
    return load_config(path) if path else None


def _cmd_demo(args: argparse.Namespace) -> int:
    from crowdwatch.demo.runner import DemoOptions, run_demo

    options = DemoOptions(
        config_path=Path(args.config) if args.config else _default_config_path(),
        database_url=args.database_url,
        broker=args.broker,
        mqtt_protocol=args.mqtt_protocol,
        video=Path(args.video) if args.video else None,
        web_port=args.port,
        duration_s=args.duration,
        speed=args.speed,
        workdir=Path(args.workdir) if args.workdir else None,
    )
    return run_demo(options, _stop_event())


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="crowdwatch",
        description="Real-time tourist-traffic and beach-crowd monitoring.",
    )
    parser.add_argument("--version", action="version", version=f"crowdwatch {__version__}")
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, summary: str, handler: Callable[..., int]) -> argparse.ArgumentParser:
        extras = EXTRAS[name]
        p = sub.add_parser(
            name,
            help=summary,
            description=_DESCRIPTIONS[name],
            epilog=f"Needs: pip install 'crowdwatch[{','.join(extras)}]'" if extras else None,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        p.add_argument("--config", "-c", help=CONFIG_HELP)
        p.set_defaults(handler=handler, extras=extras)
        return p

    edge = add("edge", "count people on cameras, publish over MQTT", _cmd_edge)
    edge.add_argument(
        "--camera",
        action="append",
        metavar="SITE/CAMERA",
        help="camera to run (repeatable); default: every non-simulated camera",
    )
    ingest = add("ingest", "write MQTT counts into PostgreSQL", _cmd_ingest)
    ingest.add_argument(
        "--worker",
        default="0",
        help="name of this worker on its host; run several with different names (default 0)",
    )
    ingest.add_argument(
        "--metrics-port",
        type=int,
        help="serve Prometheus /metrics on this port (0 = a free one; default: no endpoint)",
    )
    ingest.add_argument(
        "--metrics-host", default="127.0.0.1", help="listen address of /metrics (default 127.0.0.1)"
    )
    add("alerts", "evaluate alert rules, record and publish alerts", _cmd_alerts)
    web = add("web", "serve the phone page and JSON API", _cmd_web)
    web.add_argument("--host", help="listen address (default: web.host)")
    web.add_argument("--port", type=int, help="listen port (default: web.port; 0 = free port)")
    sim = add("simulate", "publish simulated holiday counts", _cmd_simulate)
    sim.add_argument("--speed", type=float, default=1.0, help="simulated hours per real hour")
    sim.add_argument("--seed", type=int, default=0, help="random seed")
    sim.add_argument(
        "--start",
        metavar="HH:MM",
        help="simulated local time to start from today (e.g. 08:00 plays the morning peak); "
        "default: now",
    )
    sim.add_argument(
        "--history",
        type=int,
        metavar="DAYS",
        help="instead of publishing: write DAYS days of seeded past counts into the database "
        "(holidays, weekends, workdays; e.g. 730) and refresh the rollups",
    )
    sim.add_argument("--until", help="--history: last day (YYYY-MM-DD; default yesterday)")
    sim.add_argument(
        "--compared",
        action="store_true",
        help="--history: only the days that the reports of the DAYS days up to --until + 1 "
        "compare with (same day last year, previous holiday, ordinary weekend); the demo's",
    )
    rep = add("reports", "render or send the daily index report", _cmd_reports)
    rep.add_argument("action", choices=["render", "send", "schedule", "backtest"])
    rep.add_argument("--day", help="local day YYYY-MM-DD (default today; backtest: first day)")
    rep.add_argument("--until", help="backtest: last day (the holidays between are scored)")
    rep.add_argument("--out", default=".", help="render: folder for the PNG, PDF and CSV")
    demo = add("demo", "run the whole district on this machine", _cmd_demo)
    demo.add_argument("--database-url", help="use this PostgreSQL instead of an embedded one")
    demo.add_argument("--broker", metavar="HOST:PORT", help="use this MQTT broker instead of amqtt")
    demo.add_argument(
        "--mqtt-protocol",
        choices=["5", "3.1.1"],
        default="5",
        help="protocol of --broker (the embedded broker speaks 3.1.1)",
    )
    demo.add_argument(
        "--video",
        help="footage for the real camera (default: PETS 2009 vtest.avi "
        "under $CROWDWATCH_SHARED_DIR/data/pets2009_s2l1/)",
    )
    demo.add_argument("--port", type=int, default=8080, help="web port (a free one if taken)")
    demo.add_argument("--duration", type=float, help="stop after this many seconds")
    demo.add_argument("--speed", type=float, default=1.0, help="simulator clock speed")
    demo.add_argument("--workdir", help="folder for the embedded database and logs")
    db = add("db", "upgrade, maintain, refresh rollups, apply retention, set up roles", _cmd_db)
    db.add_argument("action", choices=["upgrade", "refresh", "retention", "maintain", "roles"])
    db.add_argument("--once", action="store_true", help="maintain: one round, then exit")
    add("config", "validate a config file", _cmd_config)
    security = add("security", "generate broker accounts, ACLs and TLS config", _cmd_security)
    security.add_argument("action", choices=["mosquitto-config"])
    security.add_argument("--out", default="mosquitto", help="output folder (default mosquitto)")
    security.add_argument("--port", type=int, default=1883, help="plain listener port")
    security.add_argument("--bind", default="", help="plain listener address (default: all)")
    security.add_argument("--tls-port", type=int, default=8883, help="TLS listener port")
    security.add_argument("--tls-ca", help="CA certificate (PEM) for the TLS listener")
    security.add_argument("--tls-cert", help="server certificate (PEM)")
    security.add_argument("--tls-key", help="server private key (PEM)")
    security.add_argument("--persistence-dir", help="broker persistence folder (default: off)")
    dash = add("dashboards", "generate or push the Grafana dashboards", _cmd_dashboards)
    dash.add_argument("action", choices=["generate", "push"])
    dash.add_argument("--out", default="configs/grafana", help="generate: output folder")
    dash.add_argument(
        "--dashboards-path",
        default="/etc/grafana/provisioning/dashboards",
        help="generate: where the Grafana process finds the dashboard JSON",
    )
    dash.add_argument(
        "--sslmode",
        default="disable",
        choices=["disable", "require", "verify-ca", "verify-full"],
        help="generate: SSL mode of the PostgreSQL data source",
    )
    dash.add_argument("--url", help="push: Grafana base URL, e.g. http://grafana:3000")
    dash.add_argument("--token", help="push: service-account token ($CROWDWATCH_GRAFANA_TOKEN)")
    dash.add_argument(
        "--datasource-url",
        help="push: postgresql://user@host:port/db as Grafana reaches it "
        "($CROWDWATCH_GRAFANA_DATABASE_URL, else database.url)",
    )
    from crowdwatch.evaluation import cli_arguments

    cli_arguments.add_count_arguments(
        add("count", "count people in images, folders or videos", _cmd_count)
    )
    cli_arguments.add_eval_arguments(
        add("eval", "accuracy and speed on the shared ground truth", _cmd_eval)
    )
    cap = add("capture", "keep a camera's raw frames locally, to label them", _cmd_capture)
    cap.add_argument("--camera", required=True, metavar="SITE/CAM", help="the camera to capture")
    cap.add_argument(
        "--every", default="30m", help="time between frames: 30m, 90s, 2h (default 30m)"
    )
    cap.add_argument("--count", type=int, default=20, help="frames to keep (default 20)")
    cap.add_argument("dir", help="folder for the frames (created, owner-only)")
    label = add("label", "serve a local page to mark the people on frames", _cmd_label)
    label.add_argument("dir", help="folder of frames (what crowdwatch capture wrote)")
    label.add_argument(
        "--annotator",
        default=os.environ.get("USER") or "local",
        help="your name in the CSV (default $USER)",
    )
    label.add_argument(
        "--host", default="127.0.0.1", help="listen address (default 127.0.0.1: this machine only)"
    )
    label.add_argument(
        "--port", type=int, default=8095, help="listen port (default 8095; 0: a free one)"
    )
    train = add("train", "train our own models (the crowd counter)", _cmd_train)
    train.add_argument("model", choices=["counter"], help="what to train")
    train.add_argument("train_args", nargs=argparse.REMAINDER, help="the trainer's arguments")
    bench = add("bench", "run a benchmark (`crowdwatch bench NAME`)", _cmd_bench)
    from crowdwatch.bench import add_parsers as add_bench_parsers

    add_bench_parsers(bench)
    return parser


_SECOND_WORD = {
    "db": "action",
    "security": "action",
    "dashboards": "action",
    "bench": "benchmark",
    "train": "model",
    "reports": "action",
}
"""The positional argument that completes each command's name, where it has one."""


def command_name(args: argparse.Namespace) -> str:
    """The command as typed, with its action, benchmark or model: ``"db upgrade"``."""
    second = _SECOND_WORD.get(args.command)
    return f"{args.command} {getattr(args, second)}" if second else str(args.command)


def main(argv: list[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    command = command_name(args)
    extras: tuple[str, ...] = EXTRAS.get(command, args.extras)
    missing = missing_part(command, extras)
    if missing is not None:
        print(missing, file=sys.stderr)
        return 2
    try:
        return _dispatch(args)
    except ModuleNotFoundError as exc:
        # A module the up-front check does not list (an optional backend, a dependency of a
        # dependency): still one line, never a traceback. Our own modules missing is a bug.
        if exc.name is None or exc.name.partition(".")[0] == "crowdwatch":
            raise
        print(missing_module_message(command, exc.name, extras), file=sys.stderr)
        return 2


def _dispatch(args: argparse.Namespace) -> int:
    try:
        if args.command == "demo":
            return _cmd_demo(args)
        if args.command in ("count", "eval", "label"):
            optional: int = args.handler(_optional_config(args), args)
            return optional
        if args.command == "bench":
            return _cmd_bench(None, args)
        if args.command == "train":
            return _cmd_train(args)
        config = load_config(args.config or _default_config_path())
        result: int = args.handler(config, args)
        return result
    except CrowdwatchError as exc:
        print(f"crowdwatch {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
