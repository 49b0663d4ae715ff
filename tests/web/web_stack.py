"""Shared pieces of the web tests (a named module: test modules import it, never conftest):
credentials, the stack of broker + in-process BridgeServer + web server, Chromium checks."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.append(str(Path(__file__).resolve().parents[1]))  # tests/ for mqtt_broker (appended:
# tests/simulators must not shadow the simulators package)

from mqtt_broker import Mosquitto, free_port

from imu.alerts import AlertConfig
from imu.server import BridgeServer, ServerConfig
from imu.web import STATIC_DIR, WebConfig, run_web
from storage.embedded import EmbeddedStore

SERVER_USER = "imu-server"
PASSWORDS = {
    SERVER_USER: "server-pw",
    "alice": "alice-pw",
    "bob": "bob-pw",
    "therapist": "therapist-pw",
}
#: docs/web.md: a clinic user reads the steps and alerts of the runners it looks after
CLINIC_ACL = """
user therapist
topic read imu/alice/+/steps
topic read imu/alice/+/alerts
"""
#: a 1.5-minute run is too short for the default baseline window: a short one and an absolute
#: cadence limit make the alert engine speak within the run (as in tests/mqtt/test_bridge_e2e.py)
TEST_ALERTS = AlertConfig(
    cadence_min_spm=250.0,
    grace_s=5.0,
    transition_s=2.0,
    baseline_start_s=10.0,
    baseline_duration_s=20.0,
    baseline_min_steps=20,
)
RUN_MINUTES = 1.5
RUN_SEED = 7


@dataclass
class Stack:
    broker: Mosquitto
    server: BridgeServer
    web: WebConfig
    store_path: Path
    recording: Path
    n_packets: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.web.port}"


@contextlib.asynccontextmanager
async def running_stack(
    broker: Mosquitto, tmp_path: Path, recording: tuple[Path, int], *, acl: bool = True
) -> AsyncIterator[Stack]:
    if not (STATIC_DIR / "index.html").is_file():
        pytest.skip("imu/web_static is not built (cd web && npm ci && npm run build)")
    store_path = tmp_path / "imu.db"
    store = EmbeddedStore(store_path)
    cfg = ServerConfig(
        host=broker.host,
        port=broker.port,
        username=SERVER_USER,
        password=PASSWORDS[SERVER_USER],
        server_id="web-test",
        stats_interval_s=0.0,
        backoff_cap_s=0.5,
        idle_timeout_s=30.0,
        alert_config=TEST_ALERTS,
    )
    server = BridgeServer(cfg, [store])
    server_task = asyncio.create_task(server.run(), name="test.server")
    web_cfg = WebConfig(
        host="127.0.0.1",
        port=free_port(),
        mqtt_host=broker.host,
        mqtt_port=broker.port,
        store_path=store_path,
        reports_dir=tmp_path / "reports",
        acl_file=broker.dir / "acl" if acl else None,
    )
    stop = asyncio.Event()
    started = asyncio.Event()
    web_task = asyncio.create_task(run_web(web_cfg, stop, started=started), name="test.web")
    try:
        await asyncio.wait_for(server.connected.wait(), 10)
        await asyncio.wait_for(started.wait(), 10)
        yield Stack(broker, server, web_cfg, store_path, recording[0], recording[1])
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await asyncio.wait_for(web_task, 10)
        server_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await server_task


def missing_chromium() -> str | None:
    if not Path("/usr/bin/chromium").exists():
        return (
            "/usr/bin/chromium not found: install Debian's chromium "
            "(apt-get install -y chromium); browsers are never downloaded"
        )
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "Python package 'playwright' not installed (pip install playwright; no browser download)"
    if shutil.which("node") is None and not _playwright_driver_present():
        return "playwright's node driver is missing"
    return None


def _playwright_driver_present() -> bool:
    try:
        from playwright._impl._driver import compute_driver_executable

        node, _cli = compute_driver_executable()
        return Path(node).exists()
    except Exception:
        return False


CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
