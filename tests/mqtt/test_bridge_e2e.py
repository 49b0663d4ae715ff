"""Phone -> Mosquitto -> server -> phone, with real brokers (marked ``services``)."""

from __future__ import annotations

import asyncio
import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiomqtt
import numpy as np
import pytest
from mqtt_broker import Mosquitto
from mqtt_helpers import PASSWORDS, SERVER_USER, running_server, simulated_packets

from dsp.types import STEP_METRICS
from firmware_interface.bridge import Status, encode_raw_batch, encode_status
from firmware_interface.recording import RecordingWriter
from imu.alerts import AlertConfig
from imu.server import ReorderBuffer, ServerConfig, partition_of
from imu.sessions import replay_session
from simulators.phone import PhoneConfig, run_phone
from storage.embedded import EmbeddedStore

pytestmark = [pytest.mark.services, pytest.mark.timeout(60)]

MINUTES = 1.5
SEED = 11
DEFAULT_WINDOW = ServerConfig().reorder_window


def _offline_steps(
    packets: list[tuple[float, bytes]], tmp_path: Path, *, reorder_window: int = 0
) -> Any:
    """Steps of ``imu.sessions.replay_session`` on a recording of the same packets.

    With a reorder window the server feeds the packets in sequence order (late ones put back
    in place), so the recording holds them in that order: the same order-restoring buffer, run
    offline.
    """
    if reorder_window:
        buf = ReorderBuffer(reorder_window, hold_s=math.inf)
        ordered = buf.push([p for _, p in packets], 0.0) + buf.flush()
        rx = [rx for rx, _ in packets]
        packets = list(zip(rx, ordered, strict=True))
    rec = tmp_path / f"same-packets-{reorder_window}.rec"
    with RecordingWriter(rec, {"session": "offline", "runner": "alice", "start_utc_s": 0.0}) as w:
        for rx_s, pkt in packets:
            w.write_packet(rx_s, pkt)
    return replay_session(rec).steps


def _assert_same_steps(received: list[dict[str, Any]], offline: Any) -> None:
    assert len(received) == len(offline)
    got_t = np.array([s["time_s"] for s in received])
    np.testing.assert_array_equal(got_t, offline["time_s"])
    for m in STEP_METRICS:
        got = np.array([np.nan if s[m] is None else s[m] for s in received], dtype=float)
        np.testing.assert_allclose(got, offline[m], rtol=1e-12, atol=0, equal_nan=True, err_msg=m)


@pytest.mark.parametrize("reorder_window", [0, 32])
async def test_phone_to_server_and_back(
    broker: Mosquitto, tmp_path: Path, reorder_window: int
) -> None:
    packets = list(simulated_packets(MINUTES, SEED))
    store = EmbeddedStore(tmp_path / "imu.db")
    # a 1.5-minute run is too short for the default baseline window (2 + 4 min): a short one and
    # an absolute cadence limit make the alert engine speak within the run
    alerts = AlertConfig(
        cadence_min_spm=250.0,
        grace_s=5.0,
        transition_s=2.0,
        baseline_start_s=10.0,
        baseline_duration_s=20.0,
        baseline_min_steps=20,
    )
    async with running_server(
        broker, [store], reorder_window=reorder_window, alert_config=alerts
    ) as server:
        rep = await run_phone(
            packets, PhoneConfig(port=broker.port, runner="alice", session="run-1", speed=math.inf)
        )
    assert rep.summary is not None, "no summary from the server"
    assert rep.packets_sent == len(packets)
    assert rep.bridge is not None
    assert rep.bridge["packets_in"] == len(packets)
    assert len(rep.steps) > 100
    assert rep.alerts, "no alert reached the phone"
    assert {"metric", "level", "message", "active"} <= set(rep.alerts[0])
    _assert_same_steps(rep.steps, _offline_steps(packets, tmp_path, reorder_window=reorder_window))
    assert rep.summary["steps"] == len(rep.steps)
    assert server.counters["sessions_closed"] == 1
    assert not server.bad_payloads


async def test_broker_restart_mid_run(mosquitto_factory: Any, tmp_path: Path) -> None:
    broker = mosquitto_factory(persistence=True)
    packets = list(simulated_packets(MINUTES, SEED))
    async with running_server(broker) as server:
        phone = asyncio.create_task(
            run_phone(
                packets, PhoneConfig(port=broker.port, runner="bob", session="run-2", speed=20.0)
            )
        )
        await asyncio.sleep(1.5)
        assert not phone.done()
        assert server.sessions, "session not open before the restart"
        await asyncio.to_thread(broker.restart, 0.5)
        rep = await asyncio.wait_for(phone, 40)
        assert server.counters["disconnects"] >= 1
    assert rep.summary is not None, "no summary after the broker restart"
    assert rep.connects >= 2
    assert rep.bridge is not None
    gaps = rep.bridge["broker_gaps"]
    assert len(gaps) >= 1
    assert gaps[0]["duration_s"] > 0.3
    # same pipeline throughout: one session, every packet arrived once (duplicates dropped)
    assert server.counters["sessions_opened"] == 1
    assert rep.bridge["packets_in"] - rep.bridge["duplicates_dropped"] >= len(packets)
    assert rep.summary["decoder"]["packets_received"] == len(packets)
    _assert_same_steps(rep.steps, _offline_steps(packets, tmp_path, reorder_window=DEFAULT_WINDOW))


async def test_acl_refuses_other_runners_topic(acl_broker: Mosquitto) -> None:
    packets = list(simulated_packets(MINUTES, SEED))[:40]
    async with running_server(
        acl_broker, username=SERVER_USER, password=PASSWORDS[SERVER_USER]
    ) as server:
        async with aiomqtt.Client(
            "127.0.0.1",
            acl_broker.port,
            username="alice",
            password=PASSWORDS["alice"],
            protocol=aiomqtt.ProtocolVersion.V5,
        ) as alice:
            payload = encode_raw_batch(0, [(1, p) for _, p in packets])
            await alice.publish("imu/bob/s1/status", encode_status(Status(type="start")), qos=1)
            await alice.publish(
                "imu/bob/s1/raw", payload, qos=1
            )  # refused by the broker (PUBACK 135)
            await alice.publish("imu/alice/s1/raw", payload, qos=1)  # allowed
            for _ in range(100):
                if server.counters["messages_in"]:
                    break
                await asyncio.sleep(0.02)
            await asyncio.sleep(0.3)
        assert ("alice", "s1") in server.sessions
        assert not any(r == "bob" for r, _ in server.sessions)
        assert server.counters["messages_in"] == 1
    with pytest.raises(aiomqtt.MqttError):
        async with aiomqtt.Client("127.0.0.1", acl_broker.port, username="alice", password="wrong"):
            pass


async def test_malformed_payloads_counted_per_runner(broker: Mosquitto, tmp_path: Path) -> None:
    packets = list(simulated_packets(MINUTES, SEED))
    good = encode_raw_batch(0, [(1, p) for _, p in packets[:5]])
    garbage = [
        ("imu/mallory/s9/raw", b"\x02" + good[1:]),  # bad_version
        ("imu/mallory/s9/raw", good[:-3]),  # truncated
        ("imu/mallory/s9/raw", good + b"xx"),  # trailing_bytes
        ("imu/mallory/s9/raw", b"\x01" * 70_000),  # too_large
        ("imu/mallory/s9/status", b"{not json"),  # bad_json
        ("imu/mallory/s9/status", b'{"v":1,"type":"start","battery_pct":"full"}'),  # bad_status
        ("imu/mallory/s9/status", b'{"v":9,"type":"start"}'),  # bad_version
        ("imu/mallory/s9/raw", encode_raw_batch(0, [(1, b"\x01\x01garbage")])),  # decoder counts it
        ("imu/mal lory/s9/raw", good),  # bad topic
    ]
    stats: list[dict[str, Any]] = []
    async with (
        running_server(broker, stats_interval_s=0.3) as server,
        aiomqtt.Client("127.0.0.1", broker.port, protocol=aiomqtt.ProtocolVersion.V5) as spam,
    ):
        await spam.subscribe("imu/_server/+/stats")
        phone = asyncio.create_task(
            run_phone(
                packets,
                PhoneConfig(port=broker.port, runner="alice", session="ok-1", speed=30.0),
            )
        )
        for _ in range(20):
            for t, p in garbage:
                await spam.publish(t, p, qos=1)
            await asyncio.sleep(0.05)
        rep = await asyncio.wait_for(phone, 40)
        async with asyncio.timeout(5):
            async for msg in spam.messages:
                stats.append(json.loads(msg.payload))
                if stats[-1]["bad_payloads"].get("mallory", {}).get("bad_json") == 20:
                    break
    bad = server.bad_payloads["mallory"]
    assert bad == {
        "bad_version": 40,
        "truncated": 20,
        "trailing_bytes": 20,
        "too_large": 20,
        "bad_json": 20,
        "bad_status": 20,
    }
    assert server.bad_payloads["?"] == {"bad_topic": 20}
    assert stats[-1]["bad_payloads"]["mallory"]["too_large"] == 20
    assert "alice" not in server.bad_payloads
    assert rep.summary is not None
    _assert_same_steps(rep.steps, _offline_steps(packets, tmp_path, reorder_window=DEFAULT_WINDOW))


def _server_proc(broker: Mosquitto, partition: str, tmp_path: Path) -> subprocess.Popen[bytes]:
    code = "import sys; from imu.cli_mqtt import serve; sys.argv[0] = 'imu serve'; serve()"
    args = [
        sys.executable,
        "-c",
        code,
        "--mqtt",
        broker.url,
        "--partition",
        partition,
        "--no-store",
        "--server-id",
        f"p{partition.replace('/', 'of')}",
        "--stats-interval",
        "0.3",
        "--no-warm-up",  # the 30 s start-up budget below must not depend on JIT compile time
    ]
    log = (tmp_path / f"server-{partition.replace('/', '_')}.log").open("wb")
    return subprocess.Popen(
        args, stdout=log, stderr=subprocess.STDOUT, cwd=Path(__file__).resolve().parents[2]
    )


async def test_two_partitions_analyse_each_session_once(broker: Mosquitto, tmp_path: Path) -> None:
    runners = [f"runner-{i}" for i in range(6)]
    parts = {partition_of(r, 2) for r in runners}
    assert parts == {0, 1}
    procs = [_server_proc(broker, p, tmp_path) for p in ("0/2", "1/2")]
    packets = list(simulated_packets(MINUTES, SEED))[:2400]
    try:
        async with aiomqtt.Client(
            "127.0.0.1", broker.port, protocol=aiomqtt.ProtocolVersion.V5
        ) as obs:
            await obs.subscribe("imu/_server/+/stats")
            await obs.subscribe("imu/+/+/steps", qos=1)
            servers_up: set[str] = set()
            async with asyncio.timeout(30):
                async for msg in obs.messages:
                    servers_up.add(json.loads(msg.payload)["server"])
                    if len(servers_up) == 2:
                        break
            reps = await asyncio.gather(
                *(
                    run_phone(
                        packets,
                        PhoneConfig(port=broker.port, runner=r, session="p", speed=math.inf),
                    )
                    for r in runners
                )
            )
            summaries: dict[str, int] = {}
            last: dict[str, dict[str, Any]] = {}
            async with asyncio.timeout(5):
                async for msg in obs.messages:
                    obj = json.loads(msg.payload)
                    if obj["type"] == "summary":
                        r = str(msg.topic).split("/")[1]
                        summaries[r] = summaries.get(r, 0) + 1
                    elif obj["type"] == "stats":
                        last[obj["server"]] = obj
                        if len(last) == 2 and sum(
                            s["sessions_closed"] for s in last.values()
                        ) == len(runners):
                            break
        assert all(rep.summary is not None for rep in reps)
        assert sum(s["sessions_opened"] for s in last.values()) == len(runners)
        for s in last.values():
            i = s["partition"][0]
            assert s["sessions_opened"] == sum(partition_of(r, 2) == i for r in runners)
            assert s["other_partition"] > 0
        assert all(n == 1 for n in summaries.values())
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
