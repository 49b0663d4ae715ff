"""A real Mosquitto broker for tests and benchmarks (Debian package ``mosquitto``).

Runs ``mosquitto -c <dir>/mosquitto.conf`` on a free 127.0.0.1 port with its config, password and
ACL files and persistence in a given directory; stopped by PID (SIGTERM, then SIGKILL).
``max_queued_messages`` is raised (the default 1000 silently drops QoS 1 messages for a lagging
subscriber). Used by ``tests/mqtt/conftest.py`` and ``benchmarks/bench_mqtt_load.py``.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

__all__ = ["RUNNER_ACL", "Mosquitto", "free_port", "missing_mosquitto"]

#: per-runner ACL of docs/bridge.md: username = runner id; ``server_user`` reads/writes imu/#
RUNNER_ACL = """\
# every authenticated runner: its own topics only (%u = MQTT username = runner id)
pattern write imu/%u/+/raw
pattern write imu/%u/+/status
pattern read imu/%u/+/steps
pattern read imu/%u/+/alerts

user {server_user}
topic readwrite imu/#
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def missing_mosquitto() -> str | None:
    """``None`` if mosquitto (and mosquitto_passwd) are installed, else a skip message."""
    for name in ("mosquitto", "mosquitto_passwd"):
        if not shutil.which(name) and not Path(f"/usr/sbin/{name}").exists():
            return (
                f"{name} not found: install the Debian packages 'mosquitto mosquitto-clients' "
                "(apt-get install -y --no-install-recommends mosquitto mosquitto-clients)"
            )
    return None


def _binary(name: str) -> str:
    return shutil.which(name) or f"/usr/sbin/{name}"


class Mosquitto:
    """One broker process. ``users`` (name -> password) turns on authentication and the ACL."""

    def __init__(
        self,
        directory: Path,
        *,
        users: Mapping[str, str] | None = None,
        acl: str | None = None,
        persistence: bool = True,
        max_queued_messages: int = 1_000_000,
        max_inflight_messages: int = 100,
        port: int | None = None,
    ) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.dir / "mosquitto.log"
        lines = [
            "per_listener_settings false",
            f"listener {self.port} 127.0.0.1",
            f"max_queued_messages {max_queued_messages}",
            f"max_inflight_messages {max_inflight_messages}",
            "set_tcp_nodelay true",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
        ]
        if users is not None:
            pw = self.dir / "passwd"
            pw.unlink(missing_ok=True)
            for name, password in users.items():
                flags = ["-b"] if pw.exists() else ["-c", "-b"]
                subprocess.run(
                    [_binary("mosquitto_passwd"), *flags, str(pw), name, password],
                    check=True,
                    capture_output=True,
                )
            acl_path = self.dir / "acl"
            acl_path.write_text(acl or "")
            lines += ["allow_anonymous false", f"password_file {pw}", f"acl_file {acl_path}"]
        else:
            lines.append("allow_anonymous true")
        if persistence:
            store = self.dir / "persist"
            store.mkdir(exist_ok=True)
            lines += ["persistence true", f"persistence_location {store}/", "autosave_interval 60"]
        else:
            lines.append("persistence false")
        if os.geteuid() == 0:
            lines.append("user root")  # the tmp dir is not readable by the 'mosquitto' user
        self.conf = self.dir / "mosquitto.conf"
        self.conf.write_text("\n".join(lines) + "\n")

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def start(self, timeout_s: float = 10.0) -> None:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [_binary("mosquitto"), "-c", str(self.conf)], stdout=log, stderr=log
        )
        log.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"mosquitto exited with {self.proc.returncode}: {self.log_path.read_text()[-2000:]}"
                )
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"mosquitto did not listen on {self.port} within {timeout_s} s")

    def stop(self, timeout_s: float = 10.0) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def restart(self, down_s: float = 0.0) -> None:
        """Stop (saving the persistent store), stay down ``down_s``, start on the same port."""
        self.stop()
        time.sleep(down_s)
        self.start()

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def __enter__(self) -> Mosquitto:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
