"""The web server and its WebSocket relay without a browser: logins checked by the broker, the
bridge framing relayed with duplicates dropped, the ACL (web side and broker side), same-origin
WebSockets, and the refusal of plain HTTP on a network address. Real Mosquitto + BridgeServer."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import aiohttp
import aiomqtt
import pytest
from web_stack import PASSWORDS, SERVER_USER, running_stack

from firmware_interface.bridge import encode_raw_batch
from imu.web import AclFile, WebConfig, check_config, parse_listen, topic_matches

pytestmark = [pytest.mark.services, pytest.mark.timeout(60)]


async def _session(url: str, user: str) -> aiohttp.ClientSession:
    s = aiohttp.ClientSession(url, cookie_jar=aiohttp.CookieJar(unsafe=True))
    r = await s.post("/api/login", json={"username": user, "password": PASSWORDS[user]})
    assert r.status == 200, await r.text()
    return s


async def _next(ws: aiohttp.ClientWebSocketResponse, kind: str, timeout: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        msg = await asyncio.wait_for(ws.receive_json(), max(0.01, deadline - time.monotonic()))
        if msg["type"] == kind:
            return msg


async def test_login_is_checked_by_the_broker(
    broker: Any, tmp_path: Path, recording: tuple[Path, int]
) -> None:
    async with (
        running_stack(broker, tmp_path, recording) as st,
        aiohttp.ClientSession(st.url, cookie_jar=aiohttp.CookieJar(unsafe=True)) as s,
    ):
        assert (await s.get("/api/me")).status == 401
        r = await s.post("/api/login", json={"username": "alice", "password": "wrong"})
        assert r.status == 401
        r = await s.post("/api/login", json={"username": "../x", "password": "x"})
        assert r.status == 400
        r = await s.post("/api/login", json={"username": "alice", "password": PASSWORDS["alice"]})
        assert r.status == 200
        assert "httponly" in r.headers["Set-Cookie"].lower()
        assert "samesite=strict" in r.headers["Set-Cookie"].lower()
        assert (await (await s.get("/api/me")).json()) == {"user": "alice"}
        page = await s.get("/")
        assert page.status == 200
        assert "default-src 'self'" in page.headers["Content-Security-Policy"]
        await s.post("/api/logout")
        assert (await s.get("/api/me")).status == 401


async def test_relay_stream_roundtrip(
    broker: Any, tmp_path: Path, recording: tuple[Path, int]
) -> None:
    from simulators import simulate_run

    packets = list(simulate_run(0.5, 3).packets)
    async with running_stack(broker, tmp_path, recording) as st:
        s = await _session(st.url, "alice")
        try:
            ws = await s.ws_connect("/ws?session=relay-1")
            await _next(ws, "ready")
            t0 = time.time()
            start = {"type": "start", "time_utc_s": t0, "start_utc_s": t0, "sample_rate_hz": 200}
            await ws.send_str(json.dumps({"op": "status", "id": 0, "status": start}))
            assert (await _next(ws, "ack"))["status"] == 0
            # a status the server would reject is refused by the relay already
            bad = {"op": "status", "id": 1, "status": {"type": "start", "battery_pct": 300}}
            await ws.send_str(json.dumps(bad))
            assert (await _next(ws, "error"))["reason"] == "bad_status"
            await ws.send_bytes(b"\x02\x00\x01\x00")
            assert (await _next(ws, "error"))["reason"] == "truncated"
            batches = [packets[i : i + 50] for i in range(0, len(packets), 50)]
            frames = [
                encode_raw_batch(i, [(round((t0 + rx) * 1e6), p) for rx, p in b])
                for i, b in enumerate(batches)
            ]
            for f in frames[:3]:
                await ws.send_bytes(f)
                await _next(ws, "ack")
            # the connection drops; the page sends everything not acknowledged again
            await ws.close()
            ws = await s.ws_connect("/ws?session=relay-1")
            await _next(ws, "ready")
            for i, f in enumerate(frames):
                await ws.send_bytes(f)
                ack = await _next(ws, "ack")
                assert ack["batch"] == i
                assert ack.get("dup", False) == (i < 3)
            await ws.send_str(json.dumps({"op": "status", "id": 2, "status": {"type": "stop"}}))
            await _next(ws, "ack")
            summary = None
            deadline = time.monotonic() + 20
            while summary is None and time.monotonic() < deadline:
                m = await _next(ws, "msg", timeout=20)
                if m["msg"]["type"] == "summary":
                    summary = m["msg"]
            assert summary is not None
            assert summary["bridge"]["packets_in"] == len(packets)  # nothing published twice
            assert summary["summary"]["steps"] > 0
            await ws.close()
        finally:
            await s.close()


async def test_acl_web_side_and_broker_side(
    broker: Any, tmp_path: Path, recording: tuple[Path, int]
) -> None:
    # with --acl the web server refuses up front what the broker would not deliver
    async with running_stack(broker, tmp_path, recording) as st:
        bob = await _session(st.url, "bob")
        therapist = await _session(st.url, "therapist")
        try:
            assert (await bob.get("/api/sessions?runner=alice")).status == 403
            assert (await bob.get("/reports/alice/s1/report.html")).status == 403
            assert (await therapist.get("/api/sessions?runner=alice")).status == 200
            assert (await therapist.get("/api/sessions?runner=bob")).status == 403
            with pytest.raises(aiohttp.WSServerHandshakeError) as exc:
                await bob.ws_connect("/ws?watch=alice")
            assert exc.value.status == 403
            # cross-site WebSocket (another page's JavaScript with the user's cookie)
            with pytest.raises(aiohttp.WSServerHandshakeError) as exc:
                await therapist.ws_connect(
                    "/ws?watch=alice", headers={"Origin": "https://evil.example"}
                )
            assert exc.value.status == 403
        finally:
            await bob.close()
            await therapist.close()
    # without --acl the broker's ACL alone filters what a watcher receives
    async with running_stack(broker, tmp_path, recording, acl=False) as st:
        bob = await _session(st.url, "bob")
        therapist = await _session(st.url, "therapist")
        try:
            wb = await bob.ws_connect("/ws?watch=alice")
            wt = await therapist.ws_connect("/ws?watch=alice")
            await _next(wb, "ready")
            await _next(wt, "ready")
            async with aiomqtt.Client(
                broker.host, broker.port, username=SERVER_USER, password=PASSWORDS[SERVER_USER]
            ) as c:
                payload = json.dumps({"v": 1, "type": "steps", "batch": 0, "steps": []})
                await c.publish("imu/alice/s1/steps", payload, qos=1)
            got = await _next(wt, "msg")
            assert (got["runner"], got["session"], got["kind"]) == ("alice", "s1", "steps")
            with pytest.raises(TimeoutError):
                await _next(wb, "msg", timeout=1.0)
        finally:
            await bob.close()
            await therapist.close()


def test_plain_http_refused_off_loopback(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="refusing plain HTTP"):
        check_config(WebConfig(host="0.0.0.0"))
    with pytest.raises(ValueError, match="refusing plain HTTP"):
        check_config(WebConfig(host="192.168.1.20"))
    check_config(WebConfig(host="127.0.0.1"))
    check_config(WebConfig(host="::1"))
    with pytest.raises(ValueError, match="go together"):
        check_config(WebConfig(host="0.0.0.0", certfile=str(tmp_path / "c.pem")))
    assert parse_listen("[::1]:8443") == ("::1", 8443)
    assert parse_listen("0.0.0.0:443") == ("0.0.0.0", 443)


def test_acl_file_rules() -> None:
    acl = AclFile.parse(
        "pattern write imu/%u/+/raw\npattern read imu/%u/+/steps\n"
        "user therapist\ntopic read imu/alice/+/steps\ntopic deny imu/alice/secret/#\n"
        "user admin\ntopic imu/#\n"
    )
    assert acl.can_read("alice", "imu/alice/s1/steps")
    assert not acl.can_read("alice", "imu/bob/s1/steps")
    assert acl.can_read("therapist", "imu/alice/s1/steps")
    assert not acl.can_read("therapist", "imu/alice/secret/steps")
    assert not acl.can_read("therapist", "imu/bob/s1/steps")
    assert acl.can_read("admin", "imu/bob/s1/steps")
    assert topic_matches("imu/+/+/steps", "imu/a/b/steps")
    assert not topic_matches("imu/+/steps", "imu/a/b/steps")


async def test_https_with_cert_and_key(tmp_path: Path) -> None:
    import shutil
    import subprocess
    import sys

    from mqtt_broker import free_port

    from imu.web import run_web

    if shutil.which("openssl") is None:
        pytest.skip("openssl not found (Debian package openssl)")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    cfg = WebConfig(host="127.0.0.1", port=free_port(), certfile=str(cert), keyfile=str(key))
    stop, started = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(run_web(cfg, stop, started=started))
    try:
        await asyncio.wait_for(started.wait(), 10)
        # the client runs in a subprocess: an in-process TLS client here trips a CPython 3.11
        # bug ("AST constructor recursion depth mismatch") in a later pytest import
        script = (
            "import ssl, sys, urllib.request\n"
            "ctx = ssl.create_default_context(cafile=sys.argv[1]); ctx.check_hostname = False\n"
            "r = urllib.request.urlopen(sys.argv[2], context=ctx, timeout=10)\n"
            "print(r.status, r.headers['Strict-Transport-Security'])\n"
        )
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", script, str(cert), f"https://127.0.0.1:{cfg.port}/",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(), 20)
        assert proc.returncode == 0, err.decode()
        status, hsts = out.decode().split(" ", 1)
        assert status == "200"
        assert "max-age" in hsts
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
