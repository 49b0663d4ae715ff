"""Where results go, shared by every command that produces them: the embedded store (default),
InfluxDB (``--influx`` and friends, or ``IMU_INFLUX_*``), or nothing (``--no-store``)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

from storage.records import Sink

STORE_HELP = "SQLite file of the embedded store (default: $IMU_HOME/imu.db)."


def store_options(f: Any) -> Any:
    """Options choosing where results go: the embedded store (default) or InfluxDB.

    InfluxDB secrets (token, password) come only from the environment or the config file,
    never from flags (they would show in the process list and shell history).
    """
    options = [
        click.option("--store", type=click.Path(dir_okay=False), help=STORE_HELP),
        click.option("--no-store", is_flag=True, help="Do not write to any store."),
        click.option(
            "--influx",
            "influx_url",
            metavar="URL",
            help="Write to InfluxDB at URL instead of the embedded store (env IMU_INFLUX_URL).",
        ),
        click.option(
            "--influx-bucket",
            help="InfluxDB 2.x/3.x bucket: selects the v2 API (env IMU_INFLUX_BUCKET; token from IMU_INFLUX_TOKEN).",
        ),
        click.option("--influx-org", help="InfluxDB 2.x organisation (env IMU_INFLUX_ORG)."),
        click.option(
            "--influx-db", help="InfluxDB 1.x database: selects the v1 API (env IMU_INFLUX_DB)."
        ),
        click.option(
            "--influx-user",
            help="InfluxDB 1.x user (env IMU_INFLUX_USER; password from IMU_INFLUX_PASSWORD).",
        ),
        click.option(
            "--influx-config",
            type=click.Path(dir_okay=False, exists=True),
            help="TOML file with an [influx] table (url, bucket, org, token, database, username, password).",
        ),
    ]
    for opt in reversed(options):
        f = opt(f)
    return f


def influx_config(opts: dict[str, Any]) -> Any:
    from storage.config import InfluxConfig

    cli_values = {
        "url": opts.get("influx_url"),
        "bucket": opts.get("influx_bucket"),
        "org": opts.get("influx_org"),
        "database": opts.get("influx_db"),
        "username": opts.get("influx_user"),
    }
    return InfluxConfig.from_sources(cli=cli_values, file=opts.get("influx_config"))


@contextmanager
def sink_from_options(opts: dict[str, Any]) -> Iterator[Sink | None]:
    """The configured sink for one command; closed (drained) at the end."""
    if opts.get("no_store"):
        yield None
        return
    config = influx_config(opts)
    if config is not None:
        from storage.influx import InfluxSink

        influx = InfluxSink(config)
        try:
            yield influx
        finally:
            left = influx.drain_and_close(timeout_s=30.0)
            if left:
                click.echo(
                    f"imu: warning: InfluxDB unreachable; {left} points kept in the spool, sent on the next run",
                    err=True,
                )
        return
    from storage.embedded import EmbeddedStore

    store = EmbeddedStore(opts["store"]) if opts.get("store") else EmbeddedStore()
    try:
        yield store
    finally:
        store.close()


def store_opts(**kw: Any) -> dict[str, Any]:
    keys = (
        "store",
        "no_store",
        "influx_url",
        "influx_bucket",
        "influx_org",
        "influx_db",
        "influx_user",
        "influx_config",
    )
    return {k: kw.get(k) for k in keys}
