"""InfluxConfig from CLI flags, environment and TOML; secrets stay hidden."""

from __future__ import annotations

from pathlib import Path

import pytest

from storage.config import InfluxConfig, InfluxConfigError, Secret


def test_env_bucket_selects_v2() -> None:
    env = {
        "IMU_INFLUX_URL": "http://h:8086",
        "IMU_INFLUX_TOKEN": "tok-123",
        "IMU_INFLUX_ORG": "o",
        "IMU_INFLUX_BUCKET": "b",
    }
    c = InfluxConfig.from_env(env)
    assert c is not None
    assert c.api == "v2"
    assert c.bucket == "b"
    assert isinstance(c.token, Secret)
    assert c.token.reveal() == "tok-123"
    assert "tok-123" not in repr(c)
    assert "token='***'" in repr(c)


def test_env_database_selects_v1_and_no_url_means_none() -> None:
    env = {
        "IMU_INFLUX_URL": "http://h:8086",
        "IMU_INFLUX_DB": "running",
        "IMU_INFLUX_USER": "u",
        "IMU_INFLUX_PASSWORD": "pw-xyz",
    }
    c = InfluxConfig.from_env(env)
    assert c is not None
    assert c.api == "v1"
    assert (c.database, c.username) == ("running", "u")
    assert "pw-xyz" not in repr(c)
    assert "pw-xyz" not in c.target
    assert InfluxConfig.from_env({}) is None


def test_precedence_cli_env_file(tmp_path: Path) -> None:
    f = tmp_path / "imu.toml"
    f.write_text(
        '[influx]\nurl = "http://file:1"\ndatabase = "fdb"\nbatch_size = 77\nflush_interval_s = 2.5\n'
    )
    c = InfluxConfig.from_sources(env={}, file=f)
    assert c is not None
    assert (c.url, c.database, c.batch_size, c.flush_interval_s) == (
        "http://file:1",
        "fdb",
        77,
        2.5,
    )
    c = InfluxConfig.from_sources(env={"IMU_INFLUX_URL": "http://env:2"}, file=f)
    assert c is not None
    assert (c.url, c.database) == ("http://env:2", "fdb")
    c = InfluxConfig.from_sources(
        cli={"url": "http://cli:3", "batch_size": "5", "database": None},
        env={"IMU_INFLUX_URL": "http://env:2"},
        file=f,
    )
    assert c is not None
    assert (c.url, c.database, c.batch_size) == ("http://cli:3", "fdb", 5)


def test_credentials_in_url_are_moved_out() -> None:
    c = InfluxConfig(url="http://bob:hunter2@h:8086/", database="d")
    assert c.url == "http://h:8086/"
    assert c.username == "bob"
    assert c.password == Secret("hunter2")
    assert "hunter2" not in repr(c)


@pytest.mark.parametrize(
    ("kw", "key"),
    [
        ({"url": "", "database": "d"}, "url"),
        ({"url": "ftp://h", "database": "d"}, "url"),
        ({"url": "http://h"}, "database"),
        ({"url": "http://h", "database": "d", "bucket": "b", "token": "t"}, "bucket"),
        ({"url": "http://h", "bucket": "b"}, "token"),
        ({"url": "http://h", "database": "d", "batch_size": 0}, "batch_size"),
    ],
)
def test_invalid(kw: dict[str, object], key: str) -> None:
    with pytest.raises(InfluxConfigError) as ei:
        InfluxConfig.from_mapping(kw)
    assert ei.value.key == key


def test_bad_values_and_files(tmp_path: Path) -> None:
    with pytest.raises(InfluxConfigError) as ei:
        InfluxConfig.from_mapping({"url": "http://h", "database": "d", "batch_size": "x"})
    assert ei.value.key == "batch_size"
    with pytest.raises(InfluxConfigError):
        InfluxConfig.from_mapping({"url": "http://h", "database": "d", "nope": 1})
    bad = tmp_path / "bad.toml"
    bad.write_text("url = ")
    with pytest.raises(InfluxConfigError):
        InfluxConfig.from_toml(bad)
    with pytest.raises(InfluxConfigError):
        InfluxConfig.from_toml(tmp_path / "missing.toml")


def test_secret_does_not_print() -> None:
    s = Secret("abc")
    assert str(s) == "***"
    assert repr(s) == "Secret('***')"
    assert f"{s}" == "***"
    assert "abc" not in str([s, {"t": s}])
