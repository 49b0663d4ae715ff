"""The runner's page and the clinic view: an aiohttp web server with a WebSocket-to-MQTT relay.

``imu web --listen HOST:PORT --mqtt URL`` (or ``imu serve ... --web HOST:PORT``, which calls
:func:`run_web`) serves the page built from ``web/`` into ``imu/web_static/`` and:

* ``POST /api/login`` checks the user name and password **by connecting to the broker with them**
  (the broker's password file is the only user database) and sets an HttpOnly session cookie.
* ``GET /ws?session=S`` (runner streaming) opens an MQTT v5 connection **with the runner's own
  credentials** (client id ``web-<user>-<session>``, persistent session: steps published while the
  page is briefly offline are queued by the broker), validates and publishes what the page sends
  (binary frames: raw batches in the bridge framing -> ``imu/<user>/<S>/raw``; text frames
  ``{"op": "status", "id": n, "status": {...}}`` -> ``.../status``), answers every frame with an
  ``ack`` after the broker's PUBACK, and forwards ``.../steps`` and ``.../alerts`` to the page.
  Frames re-sent after a reconnect (same ``batch_seq`` / status ``id``) are acknowledged without
  publishing them again; the server also drops re-delivered packets by sequence number.
* ``GET /ws?watch=RUNNER[&session=S]`` (clinic, read-only) subscribes to the runner's steps and
  alerts with the watcher's credentials: the broker ACL decides what is delivered.
* ``GET /api/sessions?runner=R`` and ``/reports/<runner>/<session>/report.html``: stored
  sessions and post-run reports (``imu.report.write_report`` from the embedded store, cached in
  the reports directory), for the runner themself or users the ACL file lets read the runner.

Security: plain HTTP is refused on a non-loopback address (Web Bluetooth needs a secure context
and the page carries passwords): pass ``--cert``/``--key``. The protocol is in ``docs/web.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import random
import re
import secrets
import signal
import socket
import ssl
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import aiomqtt
import click
from aiohttp import WSMsgType
from aiohttp import web as aioweb
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from firmware_interface.bridge import (
    ID_PATTERN,
    BridgeFormatError,
    decode_json_message,
    decode_raw_batch,
    decode_status,
    json_bytes,
    parse_topic,
    topic,
)

__all__ = ["AclFile", "WebConfig", "build_app", "run_web", "web"]

log = logging.getLogger(__name__)

COOKIE: Final = "imu_session"
STATIC_DIR: Final = Path(__file__).resolve().parent / "web_static"
_REPORT_FILE: Final = re.compile(r"report(_[A-Za-z0-9_-]{1,64})?\.(html|png)")
_MAX_WS_FRAME: Final = 70_000  # a raw batch is at most 65,536 bytes
_LOGIN_FAIL_DELAY_S: Final = 0.5


# --- configuration ----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class WebConfig:
    """Settings of the web server.

    Attributes:
        host, port: where the page is served.
        mqtt_host, mqtt_port, mqtt_tls: the broker the relay connects to with each user's
            credentials (``mqtt_tls``: TLS context for ``mqtts://``, else ``None``).
        certfile, keyfile: HTTPS certificate chain and key; required unless ``host`` is loopback.
        reports_dir: finished reports ``<dir>/<runner>/<session>/report.html``; generated reports
            are cached here (default: ``reports/`` next to the store).
        store_path: the embedded store (SQLite) ``imu serve`` writes; ``None``: no session list
            and no report generation.
        acl_file: the broker's Mosquitto ACL file; decides which runners' stored sessions and
            reports a user may open (without it: only their own). Live data is always filtered
            by the broker itself.
        static_dir: the built page (default: the package's ``imu/web_static``).
        session_ttl_s: lifetime of a login.
        relay_session_expiry_s: MQTT session expiry of a streaming relay connection.
    """

    host: str = "127.0.0.1"
    port: int = 8080
    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = 1883
    mqtt_tls: ssl.SSLContext | None = None
    certfile: str | None = None
    keyfile: str | None = None
    reports_dir: Path | None = None
    store_path: Path | None = None
    acl_file: Path | None = None
    static_dir: Path = STATIC_DIR
    session_ttl_s: float = 12 * 3600.0
    relay_session_expiry_s: int = 300


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def server_ssl_context(certfile: str, keyfile: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(certfile, keyfile)
    return ctx


def check_config(cfg: WebConfig) -> None:
    """Raise ``ValueError`` for a configuration that must not run (plain HTTP on a network)."""
    if (cfg.certfile is None) != (cfg.keyfile is None):
        raise ValueError("--cert and --key go together")
    if cfg.certfile is None and not is_loopback(cfg.host):
        raise ValueError(
            f"refusing plain HTTP on {cfg.host}: Web Bluetooth needs a secure context and the page "
            "sends passwords; pass --cert and --key (or listen on 127.0.0.1 / ::1)"
        )
    if not (cfg.static_dir / "index.html").is_file():
        raise ValueError(
            f"{cfg.static_dir}/index.html missing: build the page (cd web && npm run build)"
        )


# --- Mosquitto ACL (read side) ------------------------------------------------------------------
def topic_matches(pattern: str, name: str) -> bool:
    """MQTT topic filter match (``+`` one level, ``#`` the rest)."""
    p, n = pattern.split("/"), name.split("/")
    for i, part in enumerate(p):
        if part == "#":
            return True
        if i >= len(n) or (part != "+" and part != n[i]):
            return False
    return len(p) == len(n)


@dataclass(slots=True)
class AclFile:
    """The ``topic``/``pattern`` read rules of a Mosquitto ``acl_file`` (for stored data only).

    Mosquitto semantics: ``topic`` lines belong to the preceding ``user`` line, ``pattern`` lines
    apply to every user with ``%u`` replaced by the user name (lines with ``%c`` are ignored:
    the web server has no client id to match), ``deny`` wins.
    """

    users: dict[str | None, list[tuple[str, str]]] = field(default_factory=dict)
    patterns: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def parse(cls, text: str) -> AclFile:
        acl = cls()
        user: str | None = None
        for raw in text.splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            words = line.split(None, 1)
            key, rest = words[0], (words[1] if len(words) > 1 else "")
            if key == "user":
                user = rest.strip()
                continue
            if key not in ("topic", "pattern") or not rest:
                continue
            parts = rest.split(None, 1)
            if len(parts) == 2 and parts[0] in ("read", "write", "readwrite", "deny"):
                access, name = parts[0], parts[1].strip()
            else:
                access, name = "readwrite", rest.strip()
            if key == "pattern":
                acl.patterns.append((access, name))
            else:
                acl.users.setdefault(user, []).append((access, name))
        return acl

    def can_read(self, user: str, name: str) -> bool:
        rules = list(self.users.get(user, []))
        rules += [(a, p.replace("%u", user)) for a, p in self.patterns if "%c" not in p]
        allowed = False
        for access, pattern in rules:
            if not topic_matches(pattern, name):
                continue
            if access == "deny":
                return False
            if access in ("read", "readwrite"):
                allowed = True
        return allowed


# --- logins -----------------------------------------------------------------------------------
@dataclass(slots=True)
class _Login:
    user: str
    password: str  # kept in memory only: the relay connects to the broker as this user
    expires: float


class _Logins:
    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._by_token: dict[str, _Login] = {}
        self.failures: dict[str, int] = {}

    def create(self, user: str, password: str) -> str:
        now = time.monotonic()
        for tok in [t for t, s in self._by_token.items() if s.expires < now]:
            del self._by_token[tok]
        token = secrets.token_urlsafe(32)
        self._by_token[token] = _Login(user, password, now + self.ttl_s)
        return token

    def get(self, token: str | None) -> _Login | None:
        if not token:
            return None
        s = self._by_token.get(token)
        if s is None or s.expires < time.monotonic():
            self._by_token.pop(token, None)
            return None
        return s

    def drop(self, token: str | None) -> None:
        if token:
            self._by_token.pop(token, None)


class LoginRefused(Exception):
    pass


def _client(
    cfg: WebConfig,
    user: str,
    password: str,
    client_id: str,
    *,
    persistent: bool,
) -> aiomqtt.Client:
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = cfg.relay_session_expiry_s if persistent else 0
    return aiomqtt.Client(
        cfg.mqtt_host,
        cfg.mqtt_port,
        username=user,
        password=password,
        identifier=client_id,
        protocol=aiomqtt.ProtocolVersion.V5,
        clean_start=not persistent,
        properties=props,
        tls_context=cfg.mqtt_tls,
        keepalive=30,
        timeout=10,
        socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
    )


async def verify_credentials(cfg: WebConfig, user: str, password: str) -> None:
    """Connect to the broker as ``user``. Raises :class:`LoginRefused` (bad credentials) or
    ``aiomqtt.MqttError`` (broker unreachable)."""
    client = _client(cfg, user, password, f"web-login-{secrets.token_hex(6)}", persistent=False)
    try:
        async with client:
            pass
    except aiomqtt.MqttCodeError as exc:
        rc = getattr(exc.rc, "value", exc.rc)
        if rc in (4, 5, 134, 135, 138):  # bad user name or password / not authorised / banned
            raise LoginRefused(str(exc)) from None
        raise


def _client_id(user: str, session: str) -> str:
    return f"web-{user}-{session}"[:200]


# --- the relay --------------------------------------------------------------------------------
class _StreamHub:
    """The MQTT side of one runner session streamed from the page; outlives WebSocket drops.

    Owns one persistent MQTT connection as the runner (client id ``web-<user>-<session>``,
    ``clean_start`` false: the broker queues steps/alerts while it reconnects), keeps the steps,
    alerts and summary it receives in a ring buffer with running indexes (a page that reconnects
    asks for what came after the last index it saw: nothing is lost in a network drop), and the
    batch numbers / status ids already published (re-sent frames are acknowledged, not published
    again). Closed by the reaper once no WebSocket is attached for ``idle_s``.
    """

    def __init__(
        self, cfg: WebConfig, user: str, password: str, session: str, *, max_ids: int = 200_000
    ) -> None:
        self.cfg = cfg
        self.user = user
        self.password = password
        self.session = session
        self.buffer: deque[tuple[int, dict[str, Any]]] = deque(maxlen=5000)
        self.next_index = 0
        self._new = asyncio.Event()
        self.client: aiomqtt.Client | None = None
        self.connected = asyncio.Event()
        self.failed: str | None = None
        self.attached = 0
        self.last_detach = time.monotonic()
        self.batches: set[int] = set()
        self.statuses: set[int] = set()
        self.max_ids = max_ids
        self.task = asyncio.create_task(self._run(), name=f"web.hub[{user}/{session}]")

    async def _run(self) -> None:
        attempt = 0
        while True:
            try:
                client = _client(
                    self.cfg,
                    self.user,
                    self.password,
                    _client_id(self.user, self.session),
                    persistent=True,
                )
                async with client:
                    for kind in ("steps", "alerts"):
                        await client.subscribe(topic(self.user, self.session, kind), qos=1)
                    self.client = client
                    self.connected.set()
                    attempt = 0
                    async for msg in client.messages:
                        self._received(str(msg.topic), msg.payload)
            except aiomqtt.MqttCodeError as exc:
                if getattr(exc.rc, "value", exc.rc) in (4, 5, 134, 135, 138):
                    self.failed = f"broker refused {self.user}: {exc}"
                    self.connected.clear()
                    self.client = None
                    self._notify()
                    return
                log.info("hub %s/%s: broker connection lost: %s", self.user, self.session, exc)
            except aiomqtt.MqttError as exc:
                log.info("hub %s/%s: broker connection lost: %s", self.user, self.session, exc)
            self.client = None
            self.connected.clear()
            self._notify()
            attempt += 1
            await asyncio.sleep(random.uniform(0, min(5.0, 0.2 * 2**attempt)))

    def _received(self, topic_name: str, payload: Any) -> None:
        try:
            parts = parse_topic(topic_name)
            raw = bytes(payload) if isinstance(payload, (bytes, bytearray)) else b""
            obj = decode_json_message(raw, max_bytes=1 << 20)
        except BridgeFormatError:
            return
        self.buffer.append(
            (
                self.next_index,
                {"runner": parts.runner, "session": parts.session, "kind": parts.kind, "msg": obj},
            )
        )
        self.next_index += 1
        self._notify()

    def _notify(self) -> None:
        ev, self._new = self._new, asyncio.Event()
        ev.set()

    async def forward_to(self, relay: _Relay, after: int) -> None:
        """Send buffered and new messages with an index above ``after`` to ``relay``."""
        last = after
        while True:
            ev = self._new
            items = [(i, m) for i, m in self.buffer if i > last]
            for i, m in items:
                await relay.send({"type": "msg", "index": i, **m})
                last = i
            if not items:
                if self.failed or not self.connected.is_set():
                    return  # the relay closes the WebSocket; the page reconnects
                await ev.wait()

    async def publish(self, kind: str, payload: bytes) -> None:
        client = self.client
        if client is None:
            raise aiomqtt.MqttError("broker connection lost")
        await client.publish(topic(self.user, self.session, kind), payload, qos=1)  # type: ignore[arg-type]

    def remember(self, ids: set[int], value: int) -> None:
        ids.add(value)
        if len(ids) > self.max_ids:  # keep the newest half
            keep = sorted(ids)[len(ids) // 2 :]
            ids.clear()
            ids.update(keep)

    async def close(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
            await self.task


class _Relay:
    """One WebSocket of the page (see the module docstring)."""

    def __init__(self, ws: aioweb.WebSocketResponse, state: _State, login: _Login) -> None:
        self.ws = ws
        self.state = state
        self.cfg = state.cfg
        self.login = login
        self.stats = state.stats

    async def send(self, obj: dict[str, Any]) -> None:
        if not self.ws.closed:
            await self.ws.send_str(json.dumps(obj, separators=(",", ":")))

    async def stream(self, session: str, after: int) -> None:
        hub = self.state.hub(self.login, session)
        hub.attached += 1
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(hub.connected.wait(), 10)
            if not hub.connected.is_set():
                raise aiomqtt.MqttError(hub.failed or "broker not reachable")
            await self.send(
                {"type": "ready", "mode": "stream", "runner": hub.user, "session": session}
            )
            fwd = asyncio.create_task(hub.forward_to(self, after), name="web.forward")
            try:
                async for m in self.ws:
                    if fwd.done():
                        break
                    if m.type == WSMsgType.BINARY:
                        await self._raw(hub, bytes(m.data))
                    elif m.type == WSMsgType.TEXT:
                        await self._text(hub, m.data)
                    else:
                        break
            finally:
                fwd.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await fwd
            if hub.failed or not hub.connected.is_set():
                raise aiomqtt.MqttError(hub.failed or "broker connection lost")
        finally:
            hub.attached -= 1
            hub.last_detach = time.monotonic()

    async def _raw(self, hub: _StreamHub, payload: bytes) -> None:
        try:
            batch = decode_raw_batch(payload)
        except BridgeFormatError as exc:
            self.stats["bad_frames"] += 1
            await self.send({"type": "error", "reason": exc.reason, "detail": exc.detail})
            return
        if batch.batch_seq in hub.batches:
            self.stats["duplicate_batches"] += 1
            await self.send({"type": "ack", "batch": batch.batch_seq, "dup": True})
            return
        await hub.publish("raw", payload)
        hub.remember(hub.batches, batch.batch_seq)
        self.stats["batches"] += 1
        await self.send({"type": "ack", "batch": batch.batch_seq})

    async def _text(self, hub: _StreamHub, text: str) -> None:
        try:
            obj = json.loads(text)
            if not isinstance(obj, dict):
                raise ValueError("not an object")
        except ValueError:
            await self.send({"type": "error", "reason": "bad_json", "detail": "not a JSON object"})
            return
        op = obj.get("op")
        if op == "ping":
            await self.send({"type": "pong", "t": obj.get("t")})
            return
        if (
            op != "status"
            or type(obj.get("id")) is not int
            or not isinstance(obj.get("status"), dict)
        ):
            await self.send(
                {"type": "error", "reason": "bad_op", "detail": "expected op status with id"}
            )
            return
        sid: int = obj["id"]
        if sid in hub.statuses:
            await self.send({"type": "ack", "status": sid, "dup": True})
            return
        try:
            payload = json_bytes({**obj["status"], "v": 1})
            decode_status(payload)  # strict validation before it reaches the broker
        except (BridgeFormatError, TypeError, ValueError) as exc:
            self.stats["bad_frames"] += 1
            await self.send({"type": "error", "reason": "bad_status", "detail": str(exc)[:200]})
            return
        await hub.publish("status", payload)
        hub.remember(hub.statuses, sid)
        await self.send({"type": "ack", "status": sid})

    async def watch(self, runner: str, session: str) -> None:
        """Read-only: a clean MQTT session as the watcher; the broker ACL filters delivery."""
        user = self.login.user
        client = _client(
            self.cfg,
            user,
            self.login.password,
            f"web-watch-{user}-{secrets.token_hex(4)}",
            persistent=False,
        )
        async with client:
            for kind in ("steps", "alerts"):
                await client.subscribe(f"imu/{runner}/{session}/{kind}", qos=1)
            await self.send(
                {"type": "ready", "mode": "watch", "runner": runner, "session": session}
            )
            fwd = asyncio.create_task(self._forward(client), name=f"web.watch[{user}->{runner}]")
            try:
                async for m in self.ws:
                    if fwd.done() or m.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                        break
            finally:
                fwd.cancel()
                with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                    await fwd

    async def _forward(self, client: aiomqtt.Client) -> None:
        async for msg in client.messages:
            try:
                parts = parse_topic(str(msg.topic))
                payload = msg.payload if isinstance(msg.payload, (bytes, bytearray)) else b""
                obj = decode_json_message(bytes(payload), max_bytes=1 << 20)
            except BridgeFormatError:
                continue
            self.stats["forwarded"] += 1
            await self.send(
                {
                    "type": "msg",
                    "runner": parts.runner,
                    "session": parts.session,
                    "kind": parts.kind,
                    "msg": obj,
                }
            )


@dataclass(slots=True)
class _State:
    """Shared state of one web application."""

    cfg: WebConfig
    logins: _Logins
    acl: AclFile | None
    hubs: dict[tuple[str, str], _StreamHub] = field(default_factory=dict)
    hub_idle_s: float = 300.0
    stats: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(
            (
                "logins",
                "login_failures",
                "relays",
                "batches",
                "duplicate_batches",
                "bad_frames",
                "forwarded",
            ),
            0,
        )
    )
    report_locks: dict[tuple[str, str], asyncio.Lock] = field(default_factory=dict)
    websockets: set[aioweb.WebSocketResponse] = field(default_factory=set)

    def hub(self, login: _Login, session: str) -> _StreamHub:
        key = (login.user, session)
        hub = self.hubs.get(key)
        if hub is None or hub.failed or hub.password != login.password:
            if hub is not None:
                hub.task.cancel()
            hub = _StreamHub(self.cfg, login.user, login.password, session)
            self.hubs[key] = hub
        return hub

    async def reap(self, now: float) -> None:
        for key, hub in list(self.hubs.items()):
            if hub.attached == 0 and (now - hub.last_detach > self.hub_idle_s or hub.failed):
                del self.hubs[key]
                await hub.close()


STATE: Final = aioweb.AppKey("imu_web_state", _State)
REAPER: Final = aioweb.AppKey("imu_web_reaper", asyncio.Task)


# --- the application --------------------------------------------------------------------------
_CSP_PAGE: Final = (
    "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
_CSP_REPORT: Final = (
    "default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; frame-ancestors 'self'"
)


def build_app(cfg: WebConfig) -> aioweb.Application:
    """The aiohttp application (routes, security headers, shared state)."""
    app = aioweb.Application(middlewares=[_headers_middleware], client_max_size=64 * 1024)
    app[STATE] = _State(
        cfg=cfg,
        logins=_Logins(cfg.session_ttl_s),
        acl=AclFile.parse(cfg.acl_file.read_text()) if cfg.acl_file else None,
    )
    app.on_startup.append(_start_reaper)
    app.on_shutdown.append(_close_websockets)
    r = app.router
    r.add_get("/", _index)
    r.add_get("/api/config", _api_config)
    r.add_post("/api/login", _api_login)
    r.add_post("/api/logout", _api_logout)
    r.add_get("/api/me", _api_me)
    r.add_get("/api/sessions", _api_sessions)
    r.add_get("/ws", _ws)
    r.add_get("/reports/{runner}/{session}/{name}", _report)
    if (cfg.static_dir / "assets").is_dir():
        r.add_static("/assets", cfg.static_dir / "assets")
    for extra in ("favicon.svg", "manifest.webmanifest"):
        if (cfg.static_dir / extra).is_file():
            r.add_get(f"/{extra}", _static_file(cfg.static_dir / extra))
    return app


async def _start_reaper(app: aioweb.Application) -> None:
    async def reaper() -> None:
        while True:
            await asyncio.sleep(10)
            await app[STATE].reap(time.monotonic())

    app[REAPER] = asyncio.create_task(reaper(), name="web.reaper")


async def _close_websockets(app: aioweb.Application) -> None:
    app[REAPER].cancel()
    for ws in list(app[STATE].websockets):
        await ws.close(code=1001, message=b"server shutdown")
    for hub in list(app[STATE].hubs.values()):
        await hub.close()
    app[STATE].hubs.clear()


@aioweb.middleware
async def _headers_middleware(
    request: aioweb.Request, handler: Callable[[aioweb.Request], Awaitable[aioweb.StreamResponse]]
) -> aioweb.StreamResponse:
    resp = await handler(request)
    h = resp.headers
    h.setdefault("X-Content-Type-Options", "nosniff")
    h.setdefault("Referrer-Policy", "no-referrer")
    h.setdefault("Content-Security-Policy", _CSP_PAGE)
    if request.secure:
        h.setdefault("Strict-Transport-Security", "max-age=31536000")
    if request.path.startswith("/api/"):
        h.setdefault("Cache-Control", "no-store")
    return resp


def _static_file(path: Path) -> Callable[[aioweb.Request], Awaitable[aioweb.StreamResponse]]:
    async def handler(request: aioweb.Request) -> aioweb.StreamResponse:
        return aioweb.FileResponse(path)

    return handler


async def _index(request: aioweb.Request) -> aioweb.StreamResponse:
    resp = aioweb.FileResponse(request.app[STATE].cfg.static_dir / "index.html")
    resp.headers["Cache-Control"] = "no-cache"
    return resp


def _login(request: aioweb.Request) -> _Login | None:
    login: _Login | None = request.app[STATE].logins.get(request.cookies.get(COOKIE))
    return login


def _require_login(request: aioweb.Request) -> _Login:
    login = _login(request)
    if login is None:
        raise aioweb.HTTPUnauthorized(text="log in first")
    return login


async def _api_config(request: aioweb.Request) -> aioweb.Response:
    cfg: WebConfig = request.app[STATE].cfg
    return aioweb.json_response(
        {"store": cfg.store_path is not None, "reports": _reports_dir(cfg) is not None}
    )


async def _api_login(request: aioweb.Request) -> aioweb.Response:
    cfg: WebConfig = request.app[STATE].cfg
    try:
        body = await request.json()
        user, password = body["username"], body["password"]
    except (ValueError, KeyError, TypeError):
        raise aioweb.HTTPBadRequest(text="expected JSON {username, password}") from None
    if not isinstance(user, str) or not ID_PATTERN.fullmatch(user) or not isinstance(password, str):
        raise aioweb.HTTPBadRequest(text="user name: 1-64 letters, digits, '_', '.', '-'")
    logins: _Logins = request.app[STATE].logins
    fails = logins.failures.get(user, 0)
    if fails:
        await asyncio.sleep(min(fails, 10) * _LOGIN_FAIL_DELAY_S)
    try:
        await verify_credentials(cfg, user, password)
    except LoginRefused:
        logins.failures[user] = fails + 1
        request.app[STATE].stats["login_failures"] += 1
        log.info("login refused for %s from %s", user, request.remote)
        raise aioweb.HTTPUnauthorized(text="wrong user name or password") from None
    except aiomqtt.MqttError as exc:
        raise aioweb.HTTPServiceUnavailable(text=f"broker unreachable: {exc}") from None
    logins.failures.pop(user, None)
    request.app[STATE].stats["logins"] += 1
    token = logins.create(user, password)
    resp = aioweb.json_response({"user": user})
    resp.set_cookie(
        COOKIE,
        token,
        httponly=True,
        secure=request.secure,
        samesite="Strict",
        max_age=int(cfg.session_ttl_s),
        path="/",
    )
    return resp


async def _api_logout(request: aioweb.Request) -> aioweb.Response:
    request.app[STATE].logins.drop(request.cookies.get(COOKIE))
    resp = aioweb.json_response({})
    resp.del_cookie(COOKIE, path="/")
    return resp


async def _api_me(request: aioweb.Request) -> aioweb.Response:
    login = _require_login(request)
    return aioweb.json_response({"user": login.user})


def _can_read(app: aioweb.Application, user: str, runner: str, session: str = "any") -> bool:
    acl: AclFile | None = app[STATE].acl
    if acl is None:
        return user == runner
    return acl.can_read(user, f"imu/{runner}/{session}/steps")


def _reports_dir(cfg: WebConfig) -> Path | None:
    if cfg.reports_dir is not None:
        return cfg.reports_dir
    if cfg.store_path is not None:
        return cfg.store_path.parent / "reports"
    return None


def _list_sessions(store_path: Path, runner: str) -> list[dict[str, Any]]:
    from storage.embedded import EmbeddedStore

    if not store_path.exists():
        return []
    with EmbeddedStore(store_path) as store:
        return store.list_sessions(runner)


async def _api_sessions(request: aioweb.Request) -> aioweb.Response:
    login = _require_login(request)
    cfg: WebConfig = request.app[STATE].cfg
    runner = request.query.get("runner") or login.user
    if not ID_PATTERN.fullmatch(runner):
        raise aioweb.HTTPBadRequest(text="bad runner id")
    if not _can_read(request.app, login.user, runner):
        raise aioweb.HTTPForbidden(text=f"{login.user} may not read {runner}'s sessions")
    out: list[dict[str, Any]] = []
    reports = _reports_dir(cfg)
    if cfg.store_path is not None:
        rows = await asyncio.to_thread(_list_sessions, cfg.store_path, runner)
        for s in reversed(rows):  # newest first
            out.append(
                {
                    "session": s["session"],
                    "start_utc_s": s.get("start_utc_s"),
                    "duration_s": s.get("duration_s"),
                    "steps": s.get("steps") or s.get("step_count"),
                    "device": s.get("device"),
                    "report": f"/reports/{runner}/{s['session']}/report.html",
                }
            )
    elif reports is not None and (reports / runner).is_dir():
        for d in sorted((reports / runner).iterdir(), reverse=True):
            if (d / "report.html").is_file() and ID_PATTERN.fullmatch(d.name):
                out.append({"session": d.name, "report": f"/reports/{runner}/{d.name}/report.html"})
    return aioweb.json_response(
        {
            "runner": runner,
            "sessions": out,
            "store": cfg.store_path is not None,
            "reports": reports is not None,
        }
    )


def _generate_report(store_path: Path, runner: str, session: str, out_dir: Path) -> Path | None:
    """``imu.report.write_report`` from the store; ``None`` if the session is unknown."""
    from imu.report import write_report
    from storage.embedded import EmbeddedStore
    from storage.errors import StorageError

    with EmbeddedStore(store_path) as store:
        try:
            meta = store.get_session(session)
        except StorageError:
            return None
        if meta.get("runner") != runner:
            return None
        steps = store.steps(session)
        events = store.events(session)
        alerts = store.alerts(session)
    return write_report(steps, events, alerts, meta, out_dir)


async def _report(request: aioweb.Request) -> aioweb.StreamResponse:
    login = _require_login(request)
    cfg: WebConfig = request.app[STATE].cfg
    runner, session, name = (request.match_info[k] for k in ("runner", "session", "name"))
    if not (ID_PATTERN.fullmatch(runner) and ID_PATTERN.fullmatch(session)):
        raise aioweb.HTTPNotFound()
    if not _REPORT_FILE.fullmatch(name):
        raise aioweb.HTTPNotFound()
    if not _can_read(request.app, login.user, runner, session):
        raise aioweb.HTTPForbidden(text=f"{login.user} may not read {runner}'s sessions")
    reports = _reports_dir(cfg)
    if reports is None:
        raise aioweb.HTTPNotFound(
            text="no reports directory or store configured (--reports/--store)"
        )
    out_dir = reports / runner / session
    path = out_dir / name
    refresh = request.query.get("refresh") == "1"
    if name == "report.html" and (refresh or not path.is_file()) and cfg.store_path is not None:
        locks: dict[tuple[str, str], asyncio.Lock] = request.app[STATE].report_locks
        lock = locks.setdefault((runner, session), asyncio.Lock())
        async with lock:
            if refresh or not path.is_file():
                try:
                    made = await asyncio.to_thread(
                        _generate_report, cfg.store_path, runner, session, out_dir
                    )
                except Exception as exc:
                    log.exception("report %s/%s failed", runner, session)
                    raise aioweb.HTTPInternalServerError(text=f"report failed: {exc}") from None
                if made is None:
                    raise aioweb.HTTPNotFound(text=f"no stored session {session} of {runner}")
    if not path.is_file():
        raise aioweb.HTTPNotFound(text=f"no report at {runner}/{session}/{name}")
    resp = aioweb.FileResponse(path)
    resp.headers["Content-Security-Policy"] = _CSP_REPORT
    resp.headers["Cache-Control"] = "no-cache"
    return resp


def _same_origin(request: aioweb.Request) -> bool:
    origin = request.headers.get("Origin")
    if origin is None:
        return True  # not a browser (browsers always send Origin on WebSocket requests)
    return origin == f"{request.scheme}://{request.host}"


async def _ws(request: aioweb.Request) -> aioweb.StreamResponse:
    login = _require_login(request)
    if not _same_origin(request):
        raise aioweb.HTTPForbidden(text="cross-origin WebSocket refused")
    q = request.query
    watch = q.get("watch")
    session = q.get("session") or ("+" if watch else "")
    if watch is not None and not ID_PATTERN.fullmatch(watch):
        raise aioweb.HTTPBadRequest(text="bad runner id")
    if session != "+" and not ID_PATTERN.fullmatch(session):
        raise aioweb.HTTPBadRequest(text="bad or missing session id")
    if watch is None and session == "+":
        raise aioweb.HTTPBadRequest(text="streaming needs ?session=ID")
    if watch is not None and request.app[STATE].acl is not None:
        probe = "any" if session == "+" else session
        if not _can_read(request.app, login.user, watch, probe):
            raise aioweb.HTTPForbidden(text=f"{login.user} may not read {watch}'s sessions")
    ws = aioweb.WebSocketResponse(heartbeat=20.0, max_msg_size=_MAX_WS_FRAME)
    await ws.prepare(request)
    request.app[STATE].websockets.add(ws)
    request.app[STATE].stats["relays"] += 1
    relay = _Relay(ws, request.app[STATE], login)
    try:
        after = int(q.get("after", "-1"))
    except ValueError:
        after = -1
    try:
        if watch is not None:
            await relay.watch(watch, session)
        else:
            await relay.stream(session, after)
    except aiomqtt.MqttError as exc:
        log.info("relay of %s: broker connection ended: %s", login.user, exc)
        with contextlib.suppress(ConnectionError, RuntimeError):
            await relay.send({"type": "error", "reason": "broker", "detail": str(exc)[:200]})
        await ws.close(code=1011, message=b"broker connection lost")
    finally:
        request.app[STATE].websockets.discard(ws)
    return ws


# --- running it -------------------------------------------------------------------------------
async def run_web(
    config: WebConfig, stop: asyncio.Event, *, started: asyncio.Event | None = None
) -> None:
    """Serve until ``stop`` is set (call from ``imu serve --web``). ``started`` is set once the
    socket listens. Raises ``ValueError`` for a refused configuration (see :func:`check_config`)."""
    check_config(config)
    ssl_ctx = (
        server_ssl_context(config.certfile, config.keyfile)
        if config.certfile and config.keyfile
        else None
    )
    runner = aioweb.AppRunner(build_app(config), access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    try:
        site = aioweb.TCPSite(runner, config.host, config.port, ssl_context=ssl_ctx)
        await site.start()
        scheme = "https" if ssl_ctx else "http"
        log.warning("imu web: serving %s://%s:%d/", scheme, config.host, config.port)
        if started is not None:
            started.set()
        await stop.wait()
    finally:
        await runner.cleanup()


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[v6]:PORT``."""
    m = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d{1,5})|([^:\[\]]+):(\d{1,5})", text)
    if not m:
        raise ValueError(f"--listen {text!r}: expected HOST:PORT, e.g. 127.0.0.1:8080")
    host = m.group(1) or m.group(3)
    port = int(m.group(2) or m.group(4))
    if not 0 <= port <= 65535:
        raise ValueError(f"--listen {text!r}: bad port")
    return host, port


def web_config_from_options(
    listen: str,
    mqtt_url: str,
    *,
    cert: str | None = None,
    key: str | None = None,
    reports: str | None = None,
    store: str | None = None,
    acl: str | None = None,
    cafile: str | None = None,
    default_store: bool = True,
) -> WebConfig:
    """A :class:`WebConfig` from command-line values (raises ``ValueError``).

    ``cafile`` verifies an ``mqtts://`` broker (default: the system CAs). The relay never
    presents a client certificate: each user authenticates with their own password.
    ``default_store``: without ``store``, use ``$IMU_HOME/imu.db`` if it exists.
    """
    from imu.cli_mqtt import parse_mqtt_url

    host, port = parse_listen(listen)
    try:
        broker = parse_mqtt_url(mqtt_url)
    except click.ClickException as exc:
        raise ValueError(exc.message) from None
    if cafile and not broker.tls:
        raise ValueError("--cafile needs an mqtts:// broker URL")
    mqtt_tls = ssl.create_default_context(cafile=cafile) if broker.tls else None
    store_path: Path | None = Path(store) if store else None
    if store_path is None and default_store:
        from storage.embedded import default_db_path

        store_path = default_db_path() if default_db_path().exists() else None
    cfg = WebConfig(
        host=host,
        port=port,
        mqtt_host=broker.host,
        mqtt_port=broker.port,
        mqtt_tls=mqtt_tls,
        certfile=cert,
        keyfile=key,
        reports_dir=Path(reports) if reports else None,
        store_path=store_path,
        acl_file=Path(acl) if acl else None,
    )
    check_config(cfg)
    return cfg


@click.command("web")
@click.option(
    "--listen", default="127.0.0.1:8080", show_default=True, help="HOST:PORT to serve on."
)
@click.option("--mqtt", "mqtt_url", required=True, help="Broker URL: mqtt://HOST:PORT or mqtts://…")
@click.option("--cafile", type=click.Path(dir_okay=False), help="CA to verify an mqtts:// broker.")
@click.option(
    "--cert", type=click.Path(dir_okay=False, exists=True), help="HTTPS certificate chain (PEM)."
)
@click.option(
    "--key", type=click.Path(dir_okay=False, exists=True), help="HTTPS private key (PEM)."
)
@click.option(
    "--reports",
    type=click.Path(file_okay=False),
    help="Reports directory (<runner>/<session>/report.html).",
)
@click.option(
    "--store",
    type=click.Path(dir_okay=False),
    help="Embedded store of imu serve (default: $IMU_HOME/imu.db if it exists).",
)
@click.option(
    "--acl",
    type=click.Path(dir_okay=False, exists=True),
    help="The broker's Mosquitto ACL file: who may open whose stored sessions.",
)
@click.option("-v", "--verbose", count=True, help="-v: info logs, -vv: debug logs (stderr).")
def web(
    listen: str,
    mqtt_url: str,
    cafile: str | None,
    cert: str | None,
    key: str | None,
    reports: str | None,
    store: str | None,
    acl: str | None,
    verbose: int,
) -> None:
    """Serve the runner's page (Web Bluetooth sensor -> broker relay) and the clinic view.

    Users log in with their broker credentials; the relay talks MQTT to the broker as that user,
    so the broker's ACL decides what each user sees. HTTPS (--cert/--key) is required unless
    listening on a loopback address.
    """
    import logging as _logging

    level = _logging.WARNING if verbose == 0 else _logging.INFO if verbose == 1 else _logging.DEBUG
    _logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        cfg = web_config_from_options(
            listen, mqtt_url, cert=cert, key=key, reports=reports, store=store, acl=acl,
            cafile=cafile,
        )  # fmt: skip
    except (ValueError, OSError) as exc:
        click.echo(f"imu: error: {exc}", err=True)
        raise SystemExit(2) from None

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        await run_web(cfg, stop)

    asyncio.run(main())
