"""The ``imu`` command line.

Every command that processes data goes through :class:`imu.pipeline.Pipeline`; bad input ends
with a one-line ``imu: error: ...`` on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import sys
import time
import uuid
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import click
import numpy as np
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from dsp.errors import DspError
from firmware_interface.errors import ProtocolError
from imu.cli_store import STORE_HELP, influx_config, sink_from_options, store_options, store_opts
from imu.errors import ImuError
from storage.errors import StorageError

if TYPE_CHECKING:
    from imu.csv_input import AccUnit, GyrUnit

EXIT_BAD_INPUT = 2
console = Console(stderr=False, highlight=False)
err_console = Console(stderr=True, highlight=False)


class _CliError(click.ClickException):
    exit_code = EXIT_BAD_INPUT

    def show(self, file: Any = None) -> None:
        click.echo(f"imu: error: {self.message}", err=True)


@contextmanager
def _clean_errors() -> Iterator[None]:
    """Turn every expected error into one line and exit status 2."""
    try:
        yield
    except (ImuError, ProtocolError, DspError, StorageError) as exc:
        raise _CliError(str(exc)) from None
    except OSError as exc:
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        raise _CliError(f"{where}{exc.strerror or exc}") from None


def _progress(transient: bool = True) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeRemainingColumn(),
        console=err_console,
        transient=transient,
        disable=not err_console.is_terminal,
    )


def _print_summary(summary: dict[str, Any], out_dir: Path | None) -> None:
    table = Table(
        title=f"session {summary.get('session', '')}: {summary['steps']} steps", show_lines=False
    )
    table.add_column("metric")
    table.add_column("left", justify="right")
    table.add_column("right", justify="right")
    table.add_column("asym %", justify="right")
    rows = [
        ("cadence_spm", "{:.1f}"),
        ("contact_time_s", "{:.3f}"),
        ("flight_time_s", "{:.3f}"),
        ("vertical_oscillation_m", "{:.3f}"),
        ("pelvic_drop_deg", "{:.1f}"),
        ("pelvic_rotation_deg", "{:.1f}"),
        ("pelvic_tilt_deg", "{:.1f}"),
        ("braking_mps2", "{:.1f}"),
    ]
    per = summary["per_side"]
    for name, fmt in rows:

        def cell(v: Any, fmt: str = fmt) -> str:
            return "-" if v is None else fmt.format(v)

        asym = summary["asymmetry_pct"].get(name)
        table.add_row(
            name,
            cell(per["left"][name]),
            cell(per["right"][name]),
            "-" if asym is None else f"{asym:+.1f}",
        )
    table.add_row("steps", str(per["left"]["steps"]), str(per["right"]["steps"]), "")
    console.print(table)
    dec = summary.get("decoder", {})
    if dec.get("packets_received"):
        console.print(
            f"packets: {dec['packets_received']} received, {dec['packets_lost']} lost, "
            f"{dec['packets_corrupt']} corrupt, {dec['packets_duplicate']} duplicate"
        )
    console.print(f"alerts: {summary.get('alerts', 0)}")
    if out_dir is not None:
        console.print(f"results in {out_dir}/ (events.csv, steps.csv, alerts.csv, summary.json)")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="imu-running-form")
def cli() -> None:
    """Running-form monitor for one IMU at the pelvis/sacrum.

    Finds every step, measures cadence, contact and flight time, vertical oscillation,
    pelvic drop, rotation and tilt per side, and raises alerts when form degrades with
    fatigue. Results go to the embedded store (no server needed) and to result files.
    """


@cli.command()
@click.option(
    "--minutes",
    type=click.FloatRange(0.2, 600),
    default=10.0,
    show_default=True,
    help="Length of the simulated session.",
)
@click.option(
    "--seed",
    type=int,
    default=1,
    show_default=True,
    help="Random seed: the same seed gives the same run.",
)
@click.option(
    "--record",
    "record_path",
    type=click.Path(dir_okay=False),
    help="Also write the raw packets to this recording (.rec).",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False),
    help="Write events.csv, steps.csv, alerts.csv, summary.json (and truth_steps.csv) here.",
)
@click.option(
    "--runner",
    default="sim-runner",
    show_default=True,
    help="Runner name written with every result.",
)
@click.option(
    "--rate",
    "rate_hz",
    type=click.IntRange(100, 400),
    default=200,
    show_default=True,
    help="Sensor sample rate in Hz.",
)
@store_options
def simulate(
    minutes: float,
    seed: int,
    record_path: str | None,
    out_dir: str | None,
    runner: str,
    rate_hz: int,
    **store_kw: Any,
) -> None:
    """Simulate a run (standing, walking, running with fatigue) and analyse it live.

    The simulated sensor sits at the sacrum in a random orientation and streams wire
    packets (with noise, loss and corruption) through the same pipeline as a real sensor.
    """
    with _clean_errors(), sink_from_options(store_opts(**store_kw)) as sink:
        from imu.sessions import simulate_session

        res = simulate_session(
            minutes=minutes,
            seed=seed,
            runner=runner,
            rate_hz=rate_hz,
            record_path=record_path,
            sink=sink,
            out_dir=out_dir,
            progress=_progress(),
        )
        _print_summary(res.summary, Path(out_dir) if out_dir else None)


@cli.command()
@click.argument("recording", type=click.Path(dir_okay=False))
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False),
    required=True,
    help="Directory for the result files.",
)
@click.option(
    "--realtime",
    is_flag=True,
    help="Pace the packets as they were recorded instead of as fast as possible.",
)
@store_options
def replay(recording: str, out_dir: str, realtime: bool, **store_kw: Any) -> None:
    """Process a recording (.rec) exactly as it was processed live.

    The same recording always gives byte-identical result files. A recording cut off
    mid-write is processed up to its last complete record, with a warning.
    """
    with _clean_errors(), sink_from_options(store_opts(**store_kw)) as sink:
        from imu.sessions import replay_session

        res = replay_session(
            recording,
            out_dir=out_dir,
            realtime=realtime,
            sink=sink,
            progress=_progress(),
            warn=lambda msg: click.echo(f"imu: warning: {msg}", err=True),
        )
        _print_summary(res.summary, Path(out_dir))


@cli.command()
@click.argument("input_csv", metavar="INPUT.csv", type=click.Path(dir_okay=False))
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False),
    required=True,
    help="Directory for the result files.",
)
@click.option(
    "--acc-unit",
    type=click.Choice(["g", "mps2"]),
    default="mps2",
    show_default=True,
    help="Unit of acc_x/y/z.",
)
@click.option(
    "--gyr-unit",
    type=click.Choice(["dps", "rads"]),
    default="dps",
    show_default=True,
    help="Unit of gyr_x/y/z.",
)
@click.option(
    "--runner", default="runner", show_default=True, help="Runner name written with every result."
)
@store_options
def analyze(
    input_csv: str,
    out_dir: str,
    acc_unit: str,
    gyr_unit: str,
    runner: str,
    **store_kw: Any,
) -> None:
    """Analyse a CSV recording from another tool (phone app, lab system).

    INPUT.csv has a header row and the columns time_s, acc_x, acc_y, acc_z and optionally
    gyr_x, gyr_y, gyr_z, in the sensor frame (any mounting at the pelvis/sacrum), with
    gravity included. Writes events.csv, steps.csv, alerts.csv and summary.json to --out.
    """
    with _clean_errors(), sink_from_options(store_opts(**store_kw)) as sink:
        from imu.sessions import analyze_csv

        res = analyze_csv(
            input_csv,
            out_dir=out_dir,
            acc_unit=cast("AccUnit", acc_unit),
            gyr_unit=cast("GyrUnit", gyr_unit),
            runner=runner,
            sink=sink,
        )
        _print_summary(res.summary, Path(out_dir))


@cli.command()
@click.option("--runner", help="Only this runner's sessions.")
@click.option(
    "--store",
    type=click.Path(dir_okay=False),
    help="SQLite file of the embedded store (default: $IMU_HOME/imu.db).",
)
def sessions(runner: str | None, store: str | None) -> None:
    """List the sessions in the embedded store."""
    with _clean_errors():
        from storage.embedded import EmbeddedStore

        with EmbeddedStore(store) if store else EmbeddedStore() as db:
            rows = db.list_sessions(runner=runner)
        table = Table(title=f"{len(rows)} sessions")
        for col in ("session", "runner", "source", "start (UTC)", "duration", "steps"):
            table.add_column(col)
        for r in rows:
            start = r.get("start_utc_s")
            start_txt = time.strftime("%Y-%m-%d %H:%M", time.gmtime(start)) if start else "-"
            dur = r.get("duration_s")
            table.add_row(
                str(r.get("session")),
                str(r.get("runner")),
                str(r.get("source", "")),
                start_txt,
                "-" if dur is None else f"{dur / 60:.1f} min",
                str(r.get("steps", "-")),
            )
        console.print(table)


@cli.command()
@click.argument("session")
@click.option(
    "--store",
    type=click.Path(dir_okay=False),
    help="SQLite file of the embedded store (default: $IMU_HOME/imu.db).",
)
def show(session: str, store: str | None) -> None:
    """Show one session: per-side averages, asymmetry and alerts."""
    with _clean_errors():
        from imu.outputs import summarize
        from storage.embedded import EmbeddedStore

        with EmbeddedStore(store) if store else EmbeddedStore() as db:
            meta = db.get_session(session)
            steps = db.steps(session)
            alerts = db.alerts(session)
        summary = summarize(_as_step_array(steps), {"session": session})
        summary["alerts"] = len([a for a in alerts if a.get("active", True)])
        console.print({k: v for k, v in meta.items() if v is not None})
        _print_summary(summary, None)
        for a in alerts:
            console.print(
                f"  {a.get('sensor_time_s', 0):8.1f} s  [{a.get('level')}] {a.get('message')}"
            )


@cli.command()
@click.option("--runner", required=True, help="The runner whose history to show.")
@click.option(
    "--json", "as_json", is_flag=True, help="Print the history as JSON instead of tables."
)
@store_options
def history(runner: str, as_json: bool, **store_kw: Any) -> None:
    """A runner's sessions, weekly volume and baseline over time.

    Reads whichever store is configured: InfluxDB (--influx or IMU_INFLUX_URL) or the
    embedded store. Week-over-week changes flag sudden jumps in running volume.
    """
    with _clean_errors():
        import json

        from storage.history import runner_history

        opts = store_opts(**store_kw)
        config = influx_config(opts)
        if config is not None:
            from storage.influx import InfluxQLClient

            hist = runner_history(InfluxQLClient(config), runner)
        else:
            from storage.embedded import EmbeddedStore

            with EmbeddedStore(opts["store"]) if opts.get("store") else EmbeddedStore() as db:
                hist = runner_history(db, runner)
        if as_json:
            click.echo(json.dumps(hist, indent=2, default=str))
            return
        _print_history(hist)


def _print_history(hist: dict[str, Any]) -> None:
    sessions = hist["sessions"]
    table = Table(title=f"{hist['runner']}: {len(sessions)} sessions")
    for col in (
        "start (UTC)",
        "session",
        "time",
        "steps",
        "cadence",
        "contact ms",
        "drop deg",
        "VO cm",
    ):
        table.add_column(col, justify="right" if col not in ("session", "start (UTC)") else "left")
    for s in sessions:
        av = s.get("averages", {})

        def f(key: str, scale: float, fmt: str, av: dict[str, Any] = av) -> str:
            v = av.get(key)
            return "-" if v is None else fmt.format(v * scale)

        table.add_row(
            s["start_utc"][:16].replace("T", " "),
            s["session"],
            f"{(s.get('duration_s') or 0) / 60:.1f} min",
            str(s.get("steps", 0)),
            f("cadence_spm", 1, "{:.1f}"),
            f("contact_time_s", 1000, "{:.0f}"),
            f("pelvic_drop_deg", 1, "{:.1f}"),
            f("vertical_oscillation_m", 100, "{:.1f}"),
        )
    console.print(table)
    weeks = Table(title="weekly volume")
    for col in ("week", "sessions", "time", "steps", "change"):
        weeks.add_column(col, justify="right" if col != "week" else "left")
    for w in hist["weeks"]:
        change = (w.get("change_pct") or {}).get("duration_s")
        flag = (
            ""
            if change is None
            else f"{change:+.0f} %" + ("  <- sudden jump" if change > 30 else "")
        )
        weeks.add_row(
            w["week"], str(w["sessions"]), f"{w['duration_s'] / 60:.0f} min", str(w["steps"]), flag
        )
    console.print(weeks)


@cli.command()
@click.argument("session")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False),
    required=True,
    help="Directory for report.html and its plots.",
)
@click.option("--store", type=click.Path(dir_okay=False), help=STORE_HELP)
def report(session: str, out_dir: str, store: str | None) -> None:
    """Write the post-run report of a session: an HTML page a physical therapist can read.

    Plots each metric over the run per side with the runner's baseline band and alert
    markers, and summarises per-side averages, asymmetry and when form broke down.
    """
    with _clean_errors():
        from imu.report import write_report
        from storage.embedded import EmbeddedStore

        with EmbeddedStore(store) if store else EmbeddedStore() as db:
            meta = db.get_session(session)
            steps = db.steps(session)
            events = db.events(session)
            alerts = db.alerts(session)
        path = write_report(_as_step_array(steps), events, alerts, meta, out_dir)
        console.print(f"report: {path}")


def _as_step_array(steps: Any) -> Any:
    """Rows from the store (dicts or a structured array) -> STEP_DTYPE array."""
    from dsp.types import SIDE_NAMES, STEP_DTYPE, STEP_METRICS, Activity, Side

    if isinstance(steps, np.ndarray) and steps.dtype == STEP_DTYPE:
        return steps
    names = {v: k for k, v in SIDE_NAMES.items()}
    out = np.zeros(len(steps), STEP_DTYPE)
    for i, row in enumerate(steps):
        out[i]["time_s"] = row.get("sensor_time_s", np.nan)
        out[i]["side"] = names.get(row.get("side", "unknown"), Side.UNKNOWN)
        out[i]["activity"] = (
            Activity.RUNNING if row.get("activity") == "running" else Activity.WALKING
        )
        for m in STEP_METRICS:
            v = row.get(m)
            out[i][m] = np.nan if v is None else v
    return out


def _register_commands() -> None:
    """Commands that live in their own modules (BLE, MQTT)."""
    from imu.cli_ble import bridge, live
    from imu.cli_mqtt import phone_sim, serve
    from imu.web import web

    for command in (live, bridge, serve, phone_sim, web):
        cli.add_command(command)


_register_commands()


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``imu`` console script."""
    warnings.filterwarnings("ignore", category=RuntimeWarning, module="numpy")
    try:
        cli.main(
            args=list(argv) if argv is not None else None, prog_name="imu", standalone_mode=True
        )
    except KeyboardInterrupt:
        click.echo("imu: interrupted", err=True)
        sys.exit(130)


def new_session_id(prefix: str) -> str:
    return f"{prefix}-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:6]}"


if __name__ == "__main__":
    main()
