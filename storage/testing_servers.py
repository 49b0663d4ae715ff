"""Start/stop real InfluxDB 1.x and VictoriaMetrics servers for tests and benchmarks.

Each server runs on a free 127.0.0.1 port with its data in a given directory, as a plain child
process; it is stopped by its PID (SIGTERM, then SIGKILL). Used by ``tests/servers.py`` (pytest
fixtures) and ``benchmarks/bench_influx.py``. Debian packages: ``influxdb`` (``influxd``) and
``victoria-metrics``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

__all__ = [
    "DEBIAN_PACKAGES",
    "InfluxD",
    "ServerError",
    "VictoriaMetrics",
    "free_port",
    "missing_binary",
]

#: binary -> Debian package that provides it
DEBIAN_PACKAGES = {"influxd": "influxdb", "victoria-metrics": "victoria-metrics"}


class ServerError(RuntimeError):
    """A test server did not start or answer."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def missing_binary(name: str) -> str | None:
    """``None`` if ``name`` is on PATH, else a message saying which Debian package to install."""
    if shutil.which(name):
        return None
    pkg = DEBIAN_PACKAGES.get(name, name)
    return (
        f"{name} not found: install the Debian package {pkg!r} "
        f"(apt-get install -y --no-install-recommends {pkg})"
    )


def _http(
    method: str, url: str, data: bytes | None = None, timeout_s: float = 5.0
) -> tuple[int, bytes]:
    if not url.startswith("http://"):
        raise ValueError(f"not an http URL: {url}")
    req = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - checked above
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as r:  # noqa: S310
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


class _Server:
    binary = ""
    ready_path = ""
    ready_status = 200

    def __init__(self, data_dir: str | Path, port: int | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.data_dir / f"{self.binary}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def _argv(self) -> list[str]:
        raise NotImplementedError

    def start(self, timeout_s: float = 20.0) -> None:
        msg = missing_binary(self.binary)
        if msg:
            raise ServerError(msg)
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child
        try:
            self.proc = subprocess.Popen(
                self._argv(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        finally:
            log.close()
        self.wait_ready(timeout_s)

    def wait_ready(self, timeout_s: float = 20.0) -> None:
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if self.proc is not None and self.proc.poll() is not None:
                raise ServerError(
                    f"{self.binary} exited with {self.proc.returncode}: {self.tail_log()}"
                )
            try:
                status, _ = _http("GET", self.url + self.ready_path, timeout_s=1.0)
                if status == self.ready_status:
                    return
            except OSError:
                pass
            time.sleep(0.03)
        raise ServerError(
            f"{self.binary} not ready on {self.url} after {timeout_s} s: {self.tail_log()}"
        )

    def tail_log(self, n: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM by PID, SIGKILL after ``timeout_s``."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.proc = None

    def kill(self) -> None:
        """SIGKILL by PID (crash simulation)."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
        self.proc = None

    def restart(self, timeout_s: float = 20.0) -> None:
        """Start again on the same port and data directory."""
        self.stop()
        self.start(timeout_s)

    def __enter__(self) -> _Server:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class InfluxD(_Server):
    """InfluxDB 1.x (``influxd run -config``), HTTP and RPC on loopback, no reporting/monitoring."""

    binary = "influxd"
    ready_path = "/ping"
    ready_status = 204

    def __init__(self, data_dir: str | Path, port: int | None = None) -> None:
        super().__init__(data_dir, port)
        self.rpc_port = free_port()
        self.config_path = self.data_dir / "influxdb.conf"

    def _argv(self) -> list[str]:
        d = self.data_dir
        self.config_path.write_text(
            f"""reporting-enabled = false
bind-address = "127.0.0.1:{self.rpc_port}"
[meta]
  dir = "{d}/meta"
[data]
  dir = "{d}/data"
  wal-dir = "{d}/wal"
  query-log-enabled = false
[monitor]
  store-enabled = false
[http]
  enabled = true
  bind-address = "127.0.0.1:{self.port}"
  auth-enabled = false
  log-enabled = false
[ifql]
  enabled = false
[continuous_queries]
  enabled = false
"""
        )
        return [self.binary, "run", "-config", str(self.config_path)]

    def query(self, q: str, db: str | None = None, *, epoch: str = "ns") -> dict[str, Any]:
        params = {"q": q, "epoch": epoch}
        if db:
            params["db"] = db
        status, body = _http("POST", f"{self.url}/query?" + urllib.parse.urlencode(params))
        if status != 200:
            raise ServerError(f"InfluxQL {q!r}: HTTP {status} {body[:300]!r}")
        result: dict[str, Any] = json.loads(body)["results"][0]
        if "error" in result:
            raise ServerError(f"InfluxQL {q!r}: {result['error']}")
        return result

    def rows(self, q: str, db: str) -> list[dict[str, Any]]:
        """Flattened rows of the first statement (GROUP BY tags merged in)."""
        out = []
        for s in self.query(q, db).get("series") or []:
            for v in s.get("values") or []:
                row = dict(zip(s["columns"], v, strict=True))
                row.update(s.get("tags") or {})
                out.append(row)
        return out

    def create_database(self, db: str) -> None:
        self.query(f'CREATE DATABASE "{db}"')


class VictoriaMetrics(_Server):
    """VictoriaMetrics single node; accepts the InfluxDB v1 and v2 write APIs.

    Started with ``-dedup.minScrapeInterval=1ms`` (a re-sent point does not duplicate) and
    ``-search.latencyOffset=0s``. It keeps only numbers and names series
    ``<measurement>_<field>``; read back with :meth:`export` (which forces a flush first).
    """

    binary = "victoria-metrics"
    ready_path = "/health"
    ready_status = 200

    def _argv(self) -> list[str]:
        return [
            self.binary,
            f"-httpListenAddr=127.0.0.1:{self.port}",
            f"-storageDataPath={self.data_dir / 'data'}",
            "-retentionPeriod=100y",
            "-search.latencyOffset=0s",
            "-dedup.minScrapeInterval=1ms",
            "-loggerLevel=WARN",
        ]

    def force_flush(self) -> None:
        _http("GET", f"{self.url}/internal/force_flush")

    def export(self, match: str) -> list[dict[str, Any]]:
        """``/api/v1/export`` JSON lines for a series selector (after a forced flush)."""
        self.force_flush()
        url = f"{self.url}/api/v1/export?" + urllib.parse.urlencode({"match[]": match})
        status, body = _http("GET", url)
        if status != 200:
            raise ServerError(f"export {match!r}: HTTP {status} {body[:300]!r}")
        return [json.loads(ln) for ln in body.decode().splitlines() if ln.strip()]

    def count(self, match: str) -> int:
        """Number of samples (after dedup) over all series matching ``match``."""
        return sum(len(s["values"]) for s in self.export(match))

    def wait_count(self, match: str, n: int, timeout_s: float = 20.0) -> int:
        """Poll :meth:`count` until it reaches ``n`` (VM makes new series visible with a delay)."""
        end = time.monotonic() + timeout_s
        got = self.count(match)
        while got < n and time.monotonic() < end:
            time.sleep(0.1)
            got = self.count(match)
        return got
