"""The page in a real browser (Debian's headless Chromium driven by Playwright, never a downloaded
browser) against the web server, a real Mosquitto with passwords + ACL and an in-process
BridgeServer writing to an embedded store.

The sensor is the page's replay source fed a `.rec` recording of a simulated run (the real v1 wire
packets); Chromium's BluetoothEmulation DevTools domain is not used (see docs/web.md).
Screenshots of the phone-size page go to $IMU_WEB_SCREENSHOTS (default: the test's tmp dir).
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import pytest
from web_stack import CHROMIUM_ARGS, PASSWORDS, missing_chromium, running_stack

from storage.embedded import EmbeddedStore

pytestmark = [pytest.mark.services, pytest.mark.timeout(120)]

PHONE = {"width": 390, "height": 844}


def _shots(tmp_path: Path) -> Path:
    d = Path(os.environ.get("IMU_WEB_SCREENSHOTS") or tmp_path / "screens")
    d.mkdir(parents=True, exist_ok=True)
    return d


async def _login(page: Any, url: str, user: str, password: str) -> None:
    await page.goto(url)
    await page.fill("#username", user)
    await page.fill("#password", password)
    await page.click("#login-btn")
    await page.wait_for_selector(f"[data-testid=who]:has-text('{user}')")


async def _wait_js(page: Any, expr: str, timeout_s: float) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = await page.evaluate(expr)
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {expr}")
        await asyncio.sleep(0.1)


async def test_run_page_streams_and_clinic_watches(
    broker: Any, tmp_path: Path, recording: tuple[Path, int]
) -> None:
    msg = missing_chromium()
    if msg:
        pytest.skip(msg)
    from playwright.async_api import async_playwright

    shots = _shots(tmp_path)
    errors: list[str] = []
    async with running_stack(broker, tmp_path, recording) as st, async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS, headless=True
        )
        try:
            phone = await browser.new_context(
                viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True
            )
            page = await phone.new_page()
            page.on("pageerror", lambda e: errors.append(str(e)))

            # a wrong password is refused by the broker
            await page.goto(st.url)
            await page.screenshot(path=shots / "phone-login.png")
            await page.fill("#username", "alice")
            await page.fill("#password", "nope")
            await page.click("#login-btn")
            await page.wait_for_selector("#login-error:has-text('wrong user name or password')")
            await _login(page, st.url, "alice", PASSWORDS["alice"])
            # headless Chromium over plain http://127.0.0.1 is a secure context with no adapter:
            # the page offers the replay source
            await page.screenshot(path=shots / "phone-ready.png")

            # the clinic watches alice live from a laptop-size window
            clinic = await browser.new_context(viewport={"width": 1280, "height": 860})
            watch = await clinic.new_page()
            watch.on("pageerror", lambda e: errors.append(str(e)))
            await _login(watch, st.url, "therapist", PASSWORDS["therapist"])
            await watch.click("[data-tab=watch]")
            await watch.fill("[data-testid=watch-runner]", "alice")
            await watch.click("[data-testid=watch]")
            await watch.wait_for_selector("[data-testid=watch-state]:has-text('waiting for steps')")

            # the runner streams the recording at 10x real time
            await page.set_input_files("[data-testid=replay-file]", str(st.recording))
            await page.select_option("[data-testid=replay-speed]", "10")
            await page.wait_for_selector("[data-testid=start]:not([disabled])")
            await page.click("[data-testid=start]")
            await _wait_js(page, "window.__imu.steps.length >= 20", 40)
            # a short network drop: the page buffers and re-sends in order after the reconnect
            await page.evaluate("window.__imu.relay.simulateDrop()")
            await _wait_js(
                page, "window.__imu.relay.reconnects >= 1 && window.__imu.relay.ready", 15
            )
            await page.wait_for_selector("[data-testid=alert-banner]", timeout=40_000)
            await page.screenshot(path=shots / "phone-running-alert.png")
            await page.screenshot(path=shots / "phone-running-full.png", full_page=True)

            await page.wait_for_selector("[data-testid=summary]:not([hidden])", timeout=60_000)
            await page.screenshot(path=shots / "phone-finished.png", full_page=True)
            state = await page.evaluate(
                "({steps: window.__imu.steps.length, packets: window.__imu.packets,"
                " alerts: window.__imu.alertLog.length, session: window.__imu.session,"
                " lost: window.__imu.lost,"
                " buffered: window.__imu.relay.buffered, spoken: window.__imuCues.spoken,"
                " cadence: document.querySelector('[data-testid=cadence]').textContent})"
            )
            assert state["packets"] == st.n_packets
            assert state["buffered"] == 0
            assert state["steps"] > 100
            assert state["alerts"] >= 1
            assert float(state["cadence"]) > 120
            assert len(state["spoken"]) >= 1, "no alert cue"
            assert len(state["spoken"]) <= state["alerts"]

            # the clinic saw the same session's steps and alerts
            await _wait_js(watch, "window.__imu.steps.length >= 100", 20)
            wstate = await watch.evaluate(
                "({steps: window.__imu.steps.length, session: window.__imu.session,"
                " alerts: window.__imu.alertLog.length})"
            )
            assert wstate["session"] == state["session"]
            assert wstate["alerts"] >= 1
            await watch.screenshot(path=shots / "laptop-clinic-watch.png", full_page=True)

            # the store has the session, all steps the page showed, and the alerts
            store_steps = 0
            for _ in range(50):
                with EmbeddedStore(st.store_path) as store:
                    sessions = store.list_sessions("alice")
                    store_steps = sessions[0]["step_count"] if sessions else 0
                    store_alerts = store.alerts(state["session"]) if sessions else []
                if store_steps >= state["steps"]:
                    break
                await asyncio.sleep(0.1)
            assert [s["session"] for s in sessions] == [state["session"]]
            assert store_steps == state["steps"]
            assert len(store_alerts) == state["alerts"]
            summary = st.server.summaries[("alice", state["session"])]
            assert summary["bridge"]["packets_in"] >= st.n_packets
            # the link panel's loss count agrees with the server's decoder
            assert state["lost"] == summary["summary"]["decoder"]["packets_lost"]
            # the run is over: no alert banner left on screen
            assert await page.locator("[data-testid=alert-banner]").count() == 0

            # the post-run report, generated from the store on request
            async with phone.expect_page() as report_info:
                await page.click("[data-testid=report-link]")
            report = await report_info.value
            await report.wait_for_load_state()
            assert "report" in (await report.title()).lower() or await report.locator("img").count()
            await report.screenshot(path=shots / "phone-report.png")
            assert (st.web.reports_dir / "alice" / state["session"] / "report.html").is_file()  # type: ignore[operator]
        finally:
            await browser.close()
    assert not errors, errors


async def test_page_encoders_match_the_python_reference(
    broker: Any, tmp_path: Path, recording: tuple[Path, int]
) -> None:
    """The page's v1 packet, raw batch and Movesense re-encoding, decoded by the Python side."""
    msg = missing_chromium()
    if msg:
        pytest.skip(msg)
    import numpy as np
    from playwright.async_api import async_playwright

    from firmware_interface.bridge import decode_raw_batch, encode_raw_batch
    from firmware_interface.decoder import PacketDecoder
    from firmware_interface.vendors.movesense import GspImu6Parser, encode_imu6_data

    vector = bytes.fromhex(
        "01 01 34 12 ef cd ab 89 c8 00 08 d0 07 02 00 00 00 00 00 10 64 00 38 ff 2c 01"
        " ff ff 02 00 ff 0f 00 80 ff 7f 00 00 6d 9b"
    )  # docs/protocol.md 2.2
    rng = np.random.default_rng(5)
    acc = rng.normal(0, 20, (8, 3)).astype(np.float32)
    acc[0, 0] = 200.0  # beyond 16 g: saturates like a sensor
    gyr = rng.normal(0, 300, (8, 3)).astype(np.float32)
    gsp = encode_imu6_data(99, 4_294_967_000, acc, gyr)  # ms timestamp just before the u32 wrap
    gsp2 = encode_imu6_data(99, 4_294_967_000 + 77, acc, gyr)  # wraps
    async with running_stack(broker, tmp_path, recording) as st, async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS, headless=True
        )
        try:
            page = await browser.new_page()
            await page.goto(st.url)
            out = await page.evaluate(
                """([gsp, gsp2]) => {
                  const w = window.__imuWire;
                  const hex = (b) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
                  const s = new Int16Array([0, 0, 4096, 100, -200, 300, -1, 2, 4095, -32768, 32767, 0]);
                  const v = w.encodePacket(0x1234, 0x89abcdef, 200, 8, 2000, s);
                  const batch = w.encodeRawBatch(7, [
                    { rxUs: 1714548600123456, bytes: v }, { rxUs: 1714548600123999, bytes: v }]);
                  const parser = new w.GspImu6Parser(8);
                  const conv = new w.MovesenseToV1(104);
                  const pk = [...conv.convert(parser.feed(new Uint8Array(gsp))),
                              ...conv.convert(parser.feed(new Uint8Array(gsp2)))];
                  return { crc: w.crc16(new TextEncoder().encode("123456789")), v: hex(v),
                           batch: hex(batch), ms: pk.map(hex), seq: w.packetSeq(v) };
                }""",
                [list(gsp), list(gsp2)],
            )
        finally:
            await browser.close()
    assert out["crc"] == 0x29B1
    assert bytes.fromhex(out["v"]) == vector
    assert out["seq"] == 0x1234
    assert bytes.fromhex(out["batch"]) == encode_raw_batch(
        7, [(1714548600123456, vector), (1714548600123999, vector)]
    )
    assert decode_raw_batch(bytes.fromhex(out["batch"])).packets == [vector, vector]
    # Movesense IMU6 -> v1 packets that the project's decoder accepts, same values within the
    # quantisation step (+-16 g, +-2000 dps), the u32 millisecond wrap unwrapped
    packets = [bytes.fromhex(h) for h in out["ms"]]
    dec = PacketDecoder()
    samples = dec.decode(packets)
    assert len(samples) == 16
    ref = GspImu6Parser(8).feed(gsp)
    assert ref is not None
    exp_acc = np.clip(np.vstack([acc, acc]), -16 * 9.80665, 16 * 9.80665)
    np.testing.assert_allclose(samples.acc_mps2, exp_acc, atol=16 * 9.80665 / 32768)
    np.testing.assert_allclose(samples.gyr_dps, np.vstack([gyr, gyr]), atol=2000 / 32768)
    np.testing.assert_allclose(np.diff(samples.t_s)[:7], 1 / 104, rtol=1e-6)
    assert samples.t_s[8] - samples.t_s[0] == pytest.approx(0.077, abs=1e-6)
