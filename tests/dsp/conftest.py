"""DSP tests: make the slow references in tests/reference importable (naive_*.py)."""

from __future__ import annotations

import sys
from pathlib import Path

_REF = str(Path(__file__).resolve().parents[1] / "reference")
if _REF not in sys.path:
    sys.path.insert(0, _REF)
