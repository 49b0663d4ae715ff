"""Shared pytest configuration: fixtures of real servers come from tests/servers.py."""

from servers import influx_db, influxd, influxd_factory, victoria  # noqa: F401
