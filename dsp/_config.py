"""Numba flags in one place (stumpy style). fastmath stays off: chunked == offline bit for bit."""

from __future__ import annotations

from typing import Any

NJIT_OPTS: dict[str, Any] = {"cache": True, "nogil": True, "fastmath": False}
