"""``imu serve`` and ``imu phone-sim``: the MQTT phone bridge (server and simulated phone).

Registered in :mod:`imu.cli` as ``cli.add_command(serve)`` and ``cli.add_command(phone_sim)``.
Bad arguments end with one ``imu: error: ...`` line and exit status 2.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import signal
import ssl
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click

from imu.cli_store import sink_from_options, store_options, store_opts
from storage.errors import StorageError

__all__ = ["phone_sim", "serve"]

EXIT_BAD_INPUT = 2


class _CliError(click.ClickException):
    exit_code = EXIT_BAD_INPUT

    def show(self, file: Any = None) -> None:
        click.echo(f"imu: error: {self.message}", err=True)


@dataclass(frozen=True, slots=True)
class BrokerUrl:
    host: str
    port: int
    tls: bool


def parse_mqtt_url(url: str) -> BrokerUrl:
    """``mqtt://HOST[:PORT]`` (1883) or ``mqtts://HOST[:PORT]`` (8883, TLS)."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise _CliError(f"--mqtt {url!r}: expected mqtt://HOST:PORT or mqtts://HOST:PORT")
    if parts.path not in ("", "/") or parts.username or parts.query:
        raise _CliError(
            f"--mqtt {url!r}: no path, query or credentials in the URL (use --username/--password-file)"
        )
    try:
        port = parts.port
    except ValueError:
        raise _CliError(f"--mqtt {url!r}: bad port") from None
    tls = parts.scheme == "mqtts"
    return BrokerUrl(parts.hostname, port or (8883 if tls else 1883), tls)


def _password(password_file: str | None, username: str | None) -> str | None:
    if password_file is None:
        return None
    if username is None:
        raise _CliError("--password-file needs --username")
    try:
        text = Path(password_file).read_text().strip("\r\n")
    except OSError as exc:
        raise _CliError(f"{password_file}: {exc.strerror or exc}") from None
    if not text:
        raise _CliError(f"{password_file}: empty password file")
    return text


def _tls(
    enabled: bool, cafile: str | None, certfile: str | None, keyfile: str | None
) -> ssl.SSLContext | None:
    if not enabled:
        if cafile or certfile:
            raise _CliError("--cafile/--certfile need --tls (or an mqtts:// URL)")
        return None
    from imu.server import tls_context

    try:
        return tls_context(cafile, certfile, keyfile)
    except (OSError, ssl.SSLError) as exc:
        raise _CliError(f"TLS setup: {exc}") from None


def _partition(text: str) -> tuple[int, int]:
    try:
        i_s, n_s = text.split("/")
        i, n = int(i_s), int(n_s)
    except ValueError:
        raise _CliError(f"--partition {text!r}: expected i/n, e.g. 0/2") from None
    if not (n >= 1 and 0 <= i < n):
        raise _CliError(f"--partition {text!r}: need 0 <= i < n")
    return i, n


def _logging(verbose: int) -> None:
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    logging.getLogger("mqtt").setLevel(logging.ERROR)  # aiomqtt's "pending publish calls" chatter


_broker_options = [
    click.option(
        "--mqtt",
        "url",
        required=True,
        help="Broker URL: mqtt://HOST:PORT, or mqtts://HOST:PORT for TLS.",
    ),
    click.option("--username", help="Broker user name (for a phone: the runner id)."),
    click.option(
        "--password-file", type=click.Path(dir_okay=False), help="File holding the broker password."
    ),
    click.option("--tls", is_flag=True, help="Connect with TLS (implied by mqtts://)."),
    click.option(
        "--cafile",
        type=click.Path(dir_okay=False),
        help="CA certificate(s) to verify the broker (default: system CAs).",
    ),
    click.option(
        "--certfile", type=click.Path(dir_okay=False), help="Client certificate (TLS client auth)."
    ),
    click.option("--keyfile", type=click.Path(dir_okay=False), help="Private key of --certfile."),
    click.option("-v", "--verbose", count=True, help="-v: info logs, -vv: debug logs (stderr)."),
]


def _with_broker_options(f: Any) -> Any:
    for opt in reversed(_broker_options):
        f = opt(f)
    return f


@click.command("serve")
@_with_broker_options
@click.option(
    "--partition",
    default="0/1",
    show_default=True,
    help="i/n: analyse only runners with crc32(runner) mod n == i.",
)
@store_options
@click.option(
    "--server-id",
    help="Name in the stats topic imu/_server/<id>/stats and the MQTT client id (default: host-pid).",
)
@click.option(
    "--idle-timeout",
    "idle_timeout_s",
    type=click.FloatRange(1, None),
    default=120.0,
    show_default=True,
    help="Close a session after this many seconds without data.",
)
@click.option(
    "--reorder-window",
    type=click.IntRange(0, 4096),
    default=32,
    show_default=True,
    help="Packets held back to restore sequence order (0 = off).",
)
@click.option(
    "--step-sync",
    type=click.FloatRange(0.0, 1.0),
    default=0.8,
    show_default=True,
    help="Feed a running session's packets when they may complete its next step: from this "
    "fraction of a step time after the last step's closing contact (0 = every batch).",
)
@click.option(
    "--stats-interval",
    "stats_interval_s",
    type=click.FloatRange(0, None),
    default=10.0,
    show_default=True,
    help="Seconds between stats messages (0 = none).",
)
@click.option(
    "--steps-qos",
    type=click.IntRange(0, 1),
    default=1,
    show_default=True,
    help="QoS of steps messages (alerts always QoS 1).",
)
@click.option(
    "--warm-up/--no-warm-up",
    default=True,
    show_default=True,
    help="Run a short simulated session through the pipeline before connecting (JIT compilation).",
)
@click.option(
    "--web",
    "web_listen",
    metavar="HOST:PORT",
    help="Also serve the phone/clinic web page (docs/web.md); HTTPS needed off localhost.",
)
@click.option(
    "--web-cert", type=click.Path(dir_okay=False), help="TLS certificate of the web page."
)
@click.option("--web-key", type=click.Path(dir_okay=False), help="TLS private key of --web-cert.")
@click.option(
    "--web-reports",
    type=click.Path(file_okay=False),
    help="Directory of post-run reports to serve.",
)
@click.option(
    "--web-acl",
    type=click.Path(dir_okay=False),
    help="The broker's ACL file: who may watch whose sessions in the clinic view.",
)
def serve(
    url: str,
    username: str | None,
    password_file: str | None,
    tls: bool,
    cafile: str | None,
    certfile: str | None,
    keyfile: str | None,
    verbose: int,
    partition: str,
    server_id: str | None,
    idle_timeout_s: float,
    reorder_window: int,
    step_sync: float,
    stats_interval_s: float,
    steps_qos: int,
    warm_up: bool,
    web_listen: str | None,
    web_cert: str | None,
    web_key: str | None,
    web_reports: str | None,
    web_acl: str | None,
    **store_kw: Any,
) -> None:
    """Analyse phones' sensor streams from an MQTT broker and send metrics and alerts back.

    Subscribes to imu/+/+/raw and imu/+/+/status (bridge protocol v1, docs/bridge.md), runs one
    pipeline per runner session, publishes imu/<runner>/<session>/steps and .../alerts, and
    writes results to the store. Runs until interrupted (Ctrl-C / SIGTERM).
    """
    from imu.server import BridgeServer, ServerConfig

    broker = parse_mqtt_url(url)
    opts = store_opts(**store_kw)
    store, no_store = opts["store"], bool(opts["no_store"])
    if store and no_store:
        raise _CliError("--store and --no-store exclude each other")
    kw: dict[str, Any] = {}
    if server_id:
        kw["server_id"] = server_id
    cfg = ServerConfig(
        host=broker.host,
        port=broker.port,
        username=username,
        password=_password(password_file, username),
        tls_context=_tls(tls or broker.tls, cafile, certfile, keyfile),
        partition=_partition(partition),
        idle_timeout_s=idle_timeout_s,
        reorder_window=reorder_window,
        step_sync=step_sync,
        stats_interval_s=stats_interval_s,
        steps_qos=steps_qos,
        warm_up=warm_up,
        **kw,
    )
    web_cfg = None
    if web_listen:
        from imu.web import web_config_from_options
        from storage.embedded import default_db_path

        try:
            web_cfg = web_config_from_options(
                web_listen,
                url,
                cert=web_cert,
                key=web_key,
                reports=web_reports,
                acl=web_acl,
                cafile=cafile,
                store=None if no_store else (store or str(default_db_path())),
                default_store=not no_store,
            )
        except ValueError as exc:
            raise _CliError(str(exc)) from None
    _logging(verbose)
    try:
        sink_cm = sink_from_options(
            opts
        )  # embedded store, InfluxDB (--influx / IMU_INFLUX_URL) or none
        with sink_cm as sink:
            server = BridgeServer(cfg, [sink] if sink is not None else [])
            asyncio.run(_run_until_signal(server, web_cfg))
    except StorageError as exc:
        raise _CliError(str(exc)) from None


async def _run_until_signal(server: Any, web_cfg: Any = None) -> None:
    stop = asyncio.Event()
    task = asyncio.ensure_future(server.run())
    web_task = None
    if web_cfg is not None:
        from imu.web import run_web

        web_task = asyncio.ensure_future(run_web(web_cfg, stop))

    def request_stop() -> None:
        stop.set()
        server.request_stop()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, request_stop)
    with contextlib.suppress(asyncio.CancelledError):
        await task
    stop.set()
    if web_task is not None:
        with contextlib.suppress(asyncio.CancelledError):
            await web_task


@click.command("phone-sim")
@_with_broker_options
@click.option(
    "--runner", required=True, help="Runner id (the topic's runner; with the ACL: the user name)."
)
@click.option("--session", help="Session id (default: sim-<seed>-<random>).")
@click.option(
    "--minutes",
    type=click.FloatRange(0.2, 600),
    default=2.0,
    show_default=True,
    help="Length of the simulated run.",
)
@click.option(
    "--seed", type=int, default=1, show_default=True, help="Random seed of the simulated run."
)
@click.option(
    "--realtime/--fast",
    default=True,
    show_default=True,
    help="Pace packets as the sensor would, or send as fast as possible.",
)
@click.option(
    "--speed",
    type=click.FloatRange(0.01, None, min_open=False),
    help="Pace at this multiple of real time (overrides --realtime/--fast).",
)
@click.option(
    "--batch",
    "batch_s",
    type=click.FloatRange(0.02, 5.0),
    default=0.1,
    show_default=True,
    help="Seconds of packets per raw message (docs/bridge.md section 3: 0.1 s).",
)
@click.option(
    "--timeout",
    "timeout_s",
    type=click.FloatRange(1, None),
    default=60.0,
    show_default=True,
    help="Seconds to wait for the server's summary after the run.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def phone_sim(
    url: str,
    username: str | None,
    password_file: str | None,
    tls: bool,
    cafile: str | None,
    certfile: str | None,
    keyfile: str | None,
    verbose: int,
    runner: str,
    session: str | None,
    minutes: float,
    seed: int,
    realtime: bool,
    speed: float | None,
    batch_s: float,
    timeout_s: float,
    as_json: bool,
) -> None:
    """Stream a simulated run to the bridge like the phone app, and report what came back.

    Sends status start, the raw sensor packets in batches, status stop; collects the steps,
    alerts and the final summary the server publishes for this session.
    """
    from firmware_interface.bridge import ID_PATTERN
    from simulators import simulate_run
    from simulators.phone import PhoneConfig, run_phone, summarize_report

    broker = parse_mqtt_url(url)
    session = session or f"sim-{seed}-{uuid.uuid4().hex[:8]}"
    for what, value in (("--runner", runner), ("--session", session)):
        if not ID_PATTERN.fullmatch(value):
            raise _CliError(
                f"{what} {value!r}: 1-64 letters, digits, '_', '.', '-' (not starting with '_' or '.')"
            )
    cfg = PhoneConfig(
        host=broker.host,
        port=broker.port,
        runner=runner,
        session=session,
        username=username,
        password=_password(password_file, username),
        tls_context=_tls(tls or broker.tls, cafile, certfile, keyfile),
        speed=speed if speed is not None else (1.0 if realtime else math.inf),
        batch_s=batch_s,
        results_timeout_s=timeout_s,
    )
    _logging(verbose)
    run = simulate_run(minutes, seed)
    import aiomqtt

    try:
        rep = asyncio.run(run_phone(run.packets, cfg))
    except* aiomqtt.MqttError as eg:
        raise _CliError(f"broker {broker.host}:{broker.port}: {eg.exceptions[0]}") from None
    out = summarize_report(rep)
    if as_json:
        click.echo(json.dumps({**out, "bridge": rep.bridge, "summary": rep.summary}, default=str))
        return
    click.echo(
        f"runner {rep.runner} session {rep.session}: sent {rep.packets_sent} packets in {rep.batches_sent} batches "
        f"({out['send_s']} s, {rep.connects} connection(s), {rep.resent_batches} resent)"
    )
    click.echo(
        f"received {len(rep.steps)} steps, {len(rep.alerts)} alerts, summary: {'yes' if rep.summary else 'NO'}"
    )
    lat = out["emit_latency_ms"]
    click.echo(
        f"step latency (send of the completing batch -> arrival): p50 {lat['p50']} ms, p99 {lat['p99']} ms"
    )
    if rep.summary:
        dec = rep.summary.get("decoder", {})
        click.echo(
            f"server: {rep.summary.get('steps')} steps, {dec.get('packets_received')} packets, {dec.get('packets_lost')} lost"
        )
    if rep.summary is None:
        sys.exit(1)
