"""``imu live`` and ``imu bridge``: BLE sensor commands (click commands for ``imu.cli`` to register).

Register with::

    from imu.cli_ble import bridge, live
    cli.add_command(live)
    cli.add_command(bridge)
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlparse

import click

from firmware_interface.ble import StreamConfig
from imu.cli_store import sink_from_options, store_options, store_opts

__all__ = ["bridge", "live"]

EXIT_BAD_INPUT = 2


class _CliError(click.ClickException):
    exit_code = EXIT_BAD_INPUT

    def show(self, file: Any = None) -> None:
        click.echo(f"imu: error: {self.message}", err=True)


def _fail(message: str) -> click.ClickException:
    return _CliError(message)


def _run(main: Any) -> Any:
    """Run a coroutine; the first Ctrl-C sets its stop event (clean end), the second aborts."""
    stop = asyncio.Event()

    async def wrapper() -> Any:
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGINT, stop.set)
            loop.add_signal_handler(signal.SIGTERM, stop.set)
        try:
            return await main(stop)
        finally:
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(signal.SIGINT)
                loop.remove_signal_handler(signal.SIGTERM)

    return asyncio.run(wrapper())


def _errors() -> tuple[type[BaseException], ...]:
    from dsp.errors import DspError
    from firmware_interface.errors import ProtocolError
    from imu.errors import ImuError
    from storage.errors import StorageError

    return (ProtocolError, ImuError, DspError, StorageError)


@click.command()
@click.option(
    "--device",
    "device",
    metavar="ADDR|NAME",
    help="Sensor address or advertised name (default: the first sensor advertising the IMU service).",
)
@click.option(
    "--record",
    "record_path",
    type=click.Path(dir_okay=False),
    help="Record the raw session to this .rec file while streaming.",
)
@store_options
@click.option(
    "--runner", default="runner", show_default=True, help="Runner name written with every result."
)
@click.option(
    "--rate",
    "rate_hz",
    type=click.IntRange(100, 400),
    default=200,
    show_default=True,
    help="Sensor sample rate in Hz.",
)
@click.option(
    "--acc-range",
    "acc_range_g",
    type=click.Choice(["2", "4", "8", "16"]),
    default="16",
    show_default=True,
    help="Accelerometer full scale (g).",
)
@click.option(
    "--gyr-range",
    "gyr_range_dps",
    type=click.Choice(["125", "250", "500", "1000", "2000"]),
    default="2000",
    show_default=True,
    help="Gyroscope full scale (deg/s).",
)
@click.option(
    "--duration",
    "duration_s",
    type=click.FloatRange(min=1),
    help="End the session after this many seconds (default: Ctrl-C).",
)
@click.option(
    "--scan-timeout",
    "scan_timeout_s",
    type=click.FloatRange(min=1),
    default=15.0,
    show_default=True,
    help="Seconds to look for the sensor.",
)
def live(
    device: str | None,
    record_path: str | None,
    runner: str,
    rate_hz: int,
    acc_range_g: str,
    gyr_range_dps: str,
    duration_s: float | None,
    scan_timeout_s: float,
    **store_kw: Any,
) -> None:
    """Stream from a BLE sensor, analyse every step live and record the raw session.

    Shows per-side metrics of the last steps, cadence, alerts and link quality (packets
    lost, reconnects), redrawn in place. Ctrl-C ends the session cleanly: the stream is
    stopped, the analysis flushed and the recording closed.
    """
    from rich.console import Console

    from imu.live import run_live

    config = StreamConfig(
        sample_rate_hz=rate_hz, acc_range_g=int(acc_range_g), gyr_range_dps=int(gyr_range_dps)
    )
    console = Console(highlight=False)
    try:
        # the sink is drained (InfluxDB) or closed (store) when the session ends, also on Ctrl-C
        with sink_from_options(store_opts(**store_kw)) as sink:
            res = _run(
                lambda stop: run_live(
                    device,
                    record_path=record_path,
                    sink=sink,
                    runner=runner,
                    config=config,
                    scan_timeout_s=scan_timeout_s,
                    duration_s=duration_s,
                    stop=stop,
                    console=console,
                    show=True,
                )
            )
    except _errors() as exc:
        raise _fail(str(exc)) from None
    s = res.summary
    link = s.get("link", {})
    dec = s.get("decoder", {})
    console.print(
        f"session {s.get('session')}: {s.get('steps', 0)} steps, {s.get('alerts', 0)} alerts; "
        f"{dec.get('packets_received', 0)} packets, {dec.get('packets_lost', 0)} lost, "
        f"{link.get('reconnects', 0)} reconnects"
    )
    if record_path:
        console.print(f"recording: {record_path} (replay: imu replay {record_path} --out DIR)")


@click.command()
@click.option(
    "--device",
    "device",
    metavar="ADDR|NAME",
    help="Sensor address or advertised name (default: the first IMU sensor).",
)
@click.option(
    "--mqtt",
    "mqtt_url",
    required=True,
    metavar="URL",
    help="Broker, e.g. mqtt://localhost:1883 or mqtts://user:pass@host:8883.",
)
@click.option(
    "--runner",
    default="runner",
    show_default=True,
    help="Runner id in the topics imu/{runner}/{session}/...",
)
@click.option("--session", "session_id", help="Session id (default: ble-<time>).")
@click.option(
    "--rate",
    "rate_hz",
    type=click.IntRange(100, 400),
    default=200,
    show_default=True,
    help="Sensor sample rate in Hz.",
)
@click.option(
    "--batch",
    "batch_s",
    type=click.FloatRange(0.05, 10),
    default=1.0,
    show_default=True,
    help="Seconds of packets per raw batch.",
)
@click.option(
    "--duration",
    "duration_s",
    type=click.FloatRange(min=1),
    help="End after this many seconds (default: Ctrl-C).",
)
def bridge(
    device: str | None,
    mqtt_url: str,
    runner: str,
    session_id: str | None,
    rate_hz: int,
    batch_s: float,
    duration_s: float | None,
) -> None:
    """Bridge a BLE sensor to MQTT (bridge protocol v1, like the phone app).

    Publishes status start/stop and raw batches of the sensor notifications to
    imu/{runner}/{session}/raw; the server analyses them.
    """
    url = urlparse(mqtt_url)
    if url.scheme not in ("mqtt", "mqtts", "tcp") or not url.hostname:
        raise _fail(f"--mqtt {mqtt_url!r}: expected mqtt://host[:port] or mqtts://host[:port]")
    session = session_id or f"ble-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}"
    try:
        sent = _run(
            lambda stop: bridge_session(
                device,
                mqtt_url,
                runner=runner,
                session=session,
                config=StreamConfig(sample_rate_hz=rate_hz),
                batch_s=batch_s,
                duration_s=duration_s,
                stop=stop,
            )
        )
    except _errors() as exc:
        raise _fail(str(exc)) from None
    except Exception as exc:  # aiomqtt.MqttError and friends: one line, no traceback
        if type(exc).__module__.startswith("aiomqtt"):
            raise _fail(f"MQTT broker {url.hostname}: {exc}") from None
        raise
    click.echo(f"bridged {sent} packets to imu/{runner}/{session}/raw")


async def bridge_session(
    device: str | None,
    mqtt_url: str,
    *,
    runner: str,
    session: str,
    config: StreamConfig | None = None,
    batch_s: float = 1.0,
    duration_s: float | None = None,
    stop: asyncio.Event | None = None,
    link_kwargs: dict[str, Any] | None = None,
) -> int:
    """BLE in, bridge protocol out (thin: framing and topics are :mod:`firmware_interface.bridge`'s).

    Returns the number of packets published.
    """
    import ssl

    import aiomqtt

    from firmware_interface.ble import SensorLink, find_sensor
    from firmware_interface.bridge import Status, encode_raw_batch, encode_status, topic

    url = urlparse(mqtt_url)
    kwargs = dict(link_kwargs or {})
    stop = stop or asyncio.Event()
    raw_topic, status_topic = topic(runner, session, "raw"), topic(runner, session, "status")
    dev = await find_sensor(device, scanner_backend=kwargs.get("scanner_backend"))
    tls = ssl.create_default_context() if url.scheme == "mqtts" else None
    port = url.port or (8883 if tls else 1883)
    sent = 0
    batch_seq = 0
    pending: list[tuple[int, bytes]] = []
    async with (
        aiomqtt.Client(
            url.hostname or "localhost",
            port,
            username=url.username,
            password=url.password,
            identifier=f"bridge-{runner}-{session}",
            tls_context=tls,
        ) as mqtt,
        SensorLink(dev, config, **kwargs) as link,
    ):
        info = link.info
        await mqtt.publish(
            status_topic,
            encode_status(
                Status(
                    type="start",
                    time_utc_s=time.time(),
                    start_utc_s=time.time(),
                    ble="connected",
                    device={
                        "name": dev.name or "",
                        "address": dev.address,
                        "firmware": ".".join(map(str, info.firmware_version)) if info else "",
                        "serial": info.serial if info else "",
                    },
                    app="imu bridge",
                    sample_rate_hz=float(link.config.sample_rate_hz),
                )
            ),
            qos=1,
        )
        deadline = None if duration_s is None else time.monotonic() + duration_s
        flush_at = time.monotonic() + batch_s
        batches = link.batches(max_wait_s=0.1)
        while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
            try:
                batch = await asyncio.wait_for(anext(batches), 0.25)
            except TimeoutError:
                batch = []
            except StopAsyncIteration:
                break
            pending.extend((round(item.rx_time_s * 1e6), item.data) for item in batch)
            if pending and (time.monotonic() >= flush_at or len(pending) >= 512):
                sent += await _publish(mqtt, raw_topic, batch_seq, pending, encode_raw_batch)
                batch_seq += 1
                pending = []
                flush_at = time.monotonic() + batch_s
        if pending:
            sent += await _publish(mqtt, raw_topic, batch_seq, pending, encode_raw_batch)
        await mqtt.publish(
            status_topic,
            encode_status(Status(type="stop", time_utc_s=time.time(), ble="connected")),
            qos=1,
        )
    return sent


async def _publish(
    mqtt: Any, raw_topic: str, batch_seq: int, packets: Sequence[tuple[int, bytes]], encode: Any
) -> int:
    await mqtt.publish(raw_topic, encode(batch_seq, list(packets)), qos=1)
    return len(packets)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(live())
