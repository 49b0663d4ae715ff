"""InfluxDB sink configuration: CLI flags > environment > TOML file > defaults.

Environment variables::

    IMU_INFLUX_URL       http://host:8086
    IMU_INFLUX_TOKEN     v2/v3 API token               (secret)
    IMU_INFLUX_ORG       v2 organisation
    IMU_INFLUX_BUCKET    v2/v3 bucket    -> selects the v2 write API (influxdb-client)
    IMU_INFLUX_DB        1.x database    -> selects the v1 HTTP /write API
    IMU_INFLUX_USER      1.x user
    IMU_INFLUX_PASSWORD  1.x password                  (secret)

TOML file (``[influx]`` table, or top-level keys)::

    [influx]
    url = "http://127.0.0.1:8086"
    database = "running"
    batch_size = 500
    flush_interval_s = 1.0

Secrets are held in :class:`Secret`, whose ``str``/``repr`` is ``'***'``; they are never put in
URLs (v1 uses a Basic ``Authorization`` header, v2 a ``Token`` header) nor in error messages.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit, urlunsplit

from storage.errors import StorageError

__all__ = ["ENV_VARS", "InfluxConfig", "InfluxConfigError", "Secret"]

ENV_VARS: dict[str, str] = {
    "url": "IMU_INFLUX_URL",
    "token": "IMU_INFLUX_TOKEN",
    "org": "IMU_INFLUX_ORG",
    "bucket": "IMU_INFLUX_BUCKET",
    "database": "IMU_INFLUX_DB",
    "username": "IMU_INFLUX_USER",
    "password": "IMU_INFLUX_PASSWORD",
}

_SECRET_KEYS = frozenset({"token", "password"})


class InfluxConfigError(StorageError):
    """Invalid or incomplete InfluxDB configuration."""

    def __init__(self, key: str, reason: str) -> None:
        self.key = key
        self.reason = reason
        super().__init__(f"influx config {key}: {reason}")


class Secret:
    """A string that does not print itself. ``reveal()`` gives the value."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"

    def __format__(self, spec: str) -> str:
        return "***"

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __reduce__(self) -> Any:  # pickling would be a leak path too; keep it explicit
        raise TypeError("Secret is not picklable")


@dataclass(frozen=True, slots=True)
class InfluxConfig:
    """Where and how to write.

    A ``bucket`` selects InfluxDB 2.x/3.x (``/api/v2/write`` through ``influxdb-client``; needs
    ``token``, and ``org`` for 2.x), a ``database`` selects InfluxDB 1.x (HTTP ``/write``,
    optional ``username``/``password``). Durations in seconds.

    Attributes:
        batch_size: points per HTTP request (a batch closes at this size ...)
        flush_interval_s: ... or this long after its first point.
        max_queue_points: bound of the in-memory queue; ``write`` blocks while it is full.
        timeout_s: HTTP timeout of one request.
        retry_base_s, retry_cap_s: backoff ``min(cap, base * 2**attempt)`` with jitter.
        max_retries: retries of one batch before it goes to the spool (server unreachable).
        spool_dir: durable spool directory; default ``$IMU_HOME/spool`` or
            ``~/.local/share/imu/spool``, one sub-directory per target.
        create_database: v1 only: ``CREATE DATABASE`` if the server says it does not exist.
        verify_ssl, gzip: HTTP options.
    """

    url: str
    bucket: str | None = None
    org: str | None = None
    token: Secret | None = field(default=None, repr=False)
    database: str | None = None
    username: str | None = None
    password: Secret | None = field(default=None, repr=False)
    batch_size: int = 1000
    flush_interval_s: float = 1.0
    max_queue_points: int = 100_000
    timeout_s: float = 10.0
    retry_base_s: float = 0.5
    retry_cap_s: float = 30.0
    max_retries: int = 4
    spool_dir: Path | None = None
    create_database: bool = True
    verify_ssl: bool = True
    gzip: bool = False

    def __post_init__(self) -> None:
        if not self.url:
            raise InfluxConfigError("url", "missing (flag --influx-url or IMU_INFLUX_URL)")
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InfluxConfigError("url", f"not an http(s) URL: {_strip_userinfo(self.url)!r}")
        if parts.username is not None or parts.password is not None:
            # credentials in the URL -> move them out, so the URL can be printed
            object.__setattr__(self, "url", _strip_userinfo(self.url))
            if self.username is None and parts.username:
                object.__setattr__(self, "username", unquote(parts.username))
            if self.password is None and parts.password:
                object.__setattr__(self, "password", Secret(unquote(parts.password)))
        for key in ("token", "password"):
            v = getattr(self, key)
            if isinstance(v, str):
                object.__setattr__(self, key, Secret(v))
        if self.bucket and self.database:
            raise InfluxConfigError("bucket", "give either a bucket (v2/v3) or a database (v1)")
        if not self.bucket and not self.database:
            raise InfluxConfigError(
                "database", "missing: a bucket (IMU_INFLUX_BUCKET) or a database (IMU_INFLUX_DB)"
            )
        if self.bucket and not self.token:
            raise InfluxConfigError("token", "a bucket (v2/v3) needs a token (IMU_INFLUX_TOKEN)")
        if self.batch_size < 1:
            raise InfluxConfigError("batch_size", f"must be >= 1, got {self.batch_size}")
        if self.max_queue_points < self.batch_size:
            raise InfluxConfigError("max_queue_points", "must be >= batch_size")
        if self.flush_interval_s <= 0 or self.timeout_s <= 0:
            raise InfluxConfigError("flush_interval_s", "durations must be > 0")
        if self.spool_dir is not None and not isinstance(self.spool_dir, Path):
            object.__setattr__(self, "spool_dir", Path(self.spool_dir))

    @property
    def api(self) -> Literal["v1", "v2"]:
        """``"v2"`` when a bucket is configured, else ``"v1"``."""
        return "v2" if self.bucket else "v1"

    @property
    def target(self) -> str:
        """Printable description of the destination (no secrets)."""
        where = f"bucket={self.bucket}" if self.bucket else f"db={self.database}"
        return f"{self.url} {where}"

    def secrets(self) -> list[str]:
        """The secret values (to scrub them from foreign error texts)."""
        return [s.reveal() for s in (self.token, self.password) if s]

    def __repr__(self) -> str:
        shown = []
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.name in _SECRET_KEYS:
                if v is not None:
                    shown.append(f"{f.name}='***'")
                continue
            if v is not None and v != f.default:
                shown.append(f"{f.name}={v!r}")
        return f"InfluxConfig({', '.join(shown)})"

    __str__ = __repr__

    def replace(self, **changes: Any) -> InfluxConfig:
        return dataclasses.replace(self, **changes)

    # -- sources -------------------------------------------------------------------------------
    @classmethod
    def from_sources(
        cls,
        *,
        cli: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
        file: str | Path | None = None,
    ) -> InfluxConfig | None:
        """Merge CLI flags (highest), environment, TOML file (lowest).

        Args:
            cli: option values by field name (``None`` values are ignored).
            env: environment (default ``os.environ``).
            file: TOML file; its ``[influx]`` table or top-level keys.

        Returns:
            the config, or ``None`` when no URL is configured anywhere (use the embedded store).

        Raises:
            InfluxConfigError: a URL is configured but the rest is incomplete or invalid.
        """
        values: dict[str, Any] = {}
        if file is not None:
            values.update(_read_toml(Path(file)))
        env = os.environ if env is None else env
        for key, var in ENV_VARS.items():
            if env.get(var):
                values[key] = env[var]
        if cli:
            values.update({k: v for k, v in cli.items() if v is not None})
        if not values.get("url"):
            return None
        return cls.from_mapping(values)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> InfluxConfig | None:
        return cls.from_sources(env=env)

    @classmethod
    def from_toml(cls, path: str | Path) -> InfluxConfig | None:
        return cls.from_sources(env={}, file=path)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> InfluxConfig:
        names = {f.name: f for f in dataclasses.fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, raw in values.items():
            k = key.replace("-", "_")
            k = {"db": "database", "user": "username"}.get(k, k)
            if k not in names:
                raise InfluxConfigError(k, "unknown setting")
            kwargs[k] = _convert(k, raw, names[k].default)
        return cls(**kwargs)


def _convert(key: str, raw: Any, default: Any) -> Any:
    if key in _SECRET_KEYS:
        return raw if isinstance(raw, Secret) else Secret(str(raw))
    if key == "spool_dir":
        return Path(raw).expanduser()
    try:
        if isinstance(default, bool):
            if isinstance(raw, str):
                if raw.lower() in ("1", "true", "yes", "on"):
                    return True
                if raw.lower() in ("0", "false", "no", "off"):
                    return False
                raise ValueError(raw)
            return bool(raw)
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float):
            return float(raw)
    except ValueError:
        raise InfluxConfigError(key, f"bad value {raw!r}") from None
    return str(raw)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise InfluxConfigError("file", f"cannot read {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise InfluxConfigError("file", f"{path}: {exc}") from None
    table = data.get("influx", data)
    if not isinstance(table, dict):
        raise InfluxConfigError("file", f"{path}: [influx] must be a table")
    return dict(table)


def _strip_userinfo(url: str) -> str:
    p = urlsplit(url)
    if p.username is None and p.password is None:
        return url
    host = p.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{p.port}" if p.port else "")
    return urlunsplit((p.scheme, netloc, p.path, p.query, p.fragment))
