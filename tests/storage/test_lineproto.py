"""Record -> line protocol, against hand-written lines."""

from __future__ import annotations

import math

import numpy as np
import pytest

from storage.lineproto import encode_field, record_to_line, records_to_lines, records_to_payload
from storage.records import Record


def test_basic_line_sorted_tags_and_field_types() -> None:
    r = Record(
        "steps",
        1_700_000_000_123_456_789,
        {"session": "s1", "runner": "ana", "side": "left"},
        {"cadence_spm": 172.5, "contact_time_s": 0.25},
    )
    assert record_to_line(r) == (
        "steps,runner=ana,session=s1,side=left cadence_spm=172.5,contact_time_s=0.25 "
        "1700000000123456789"
    )


def test_int_bool_string_fields() -> None:
    r = Record("misc", 5, {"a": "b"}, {"n": 3, "ok": True, "off": False, "msg": "hi"})
    assert record_to_line(r) == 'misc,a=b msg="hi",n=3i,off=false,ok=true 5'


def test_escaping_measurement_tags_fields_strings() -> None:
    r = Record(
        "my meas,x",
        1,
        {"tag key": "va,l=ue x", "k=": "a\\b"},
        {"fi eld,=": 'say "hi" \\ bye'},
    )
    assert record_to_line(r) == (
        r"my\ meas\,x,k\==a\b,tag\ key=va\,l\=ue\ x fi\ eld\,\==" + '"say \\"hi\\" \\\\ bye"' + " 1"
    )


def test_backslashes_before_separators_are_doubled() -> None:
    r = Record("m\\", 1, {"t": "a\\,b", "u": "end\\", "v": "mid\\dle"}, {"f\\=": 1.0})
    assert record_to_line(r) == r"m\\,t=a\\\,b,u=end\\,v=mid\dle f\\\==1.0 1"


def test_newlines_in_keys_are_escaped() -> None:
    r = Record("m", 1, {"t": "a\nb"}, {"f": 1.0})
    assert record_to_line(r) == "m,t=a\\nb f=1.0 1"


def test_nan_inf_fields_omitted_and_empty_points_skipped() -> None:
    r1 = Record("m", 1, {}, {"a": math.nan, "b": 2.0, "c": math.inf})
    r2 = Record("m", 2, {}, {"a": math.nan})
    r3 = Record("m", 3, {}, {})
    assert record_to_line(r1) == "m b=2.0 1"
    assert record_to_line(r2) is None
    assert record_to_line(r3) is None
    assert records_to_lines([r1, r2, r3]) == ["m b=2.0 1"]
    assert records_to_payload([r1, r1]) == b"m b=2.0 1\nm b=2.0 1"


def test_empty_tag_values_are_left_out() -> None:
    r = Record("m", 1, {"device": "", "runner": "r"}, {"v": 1.5})
    assert record_to_line(r) == "m,runner=r v=1.5 1"


def test_schema_types_are_forced() -> None:
    # sessions.steps is a count -> int even if given as float; duration_s is a float even if int
    r = Record("sessions", 10, {"runner": "r", "session": "s"}, {"steps": 120.0, "duration_s": 60})
    assert record_to_line(r) == "sessions,runner=r,session=s duration_s=60.0,steps=120i 10"
    # alerts.active is a bool even if given as 1
    r = Record("alerts", 11, {"metric": "cadence_spm"}, {"active": 1, "message": "low"})
    assert record_to_line(r) == 'alerts,metric=cadence_spm active=true,message="low" 11'


def test_numpy_scalars() -> None:
    r = Record("m", np.int64(7), {}, {"a": np.float64(1.25), "b": np.int32(4)})  # type: ignore[arg-type,dict-item]
    assert record_to_line(r) == "m a=1.25,b=4i 7"


def test_float_repr_round_trips() -> None:
    assert encode_field(0.1) == "0.1"
    assert encode_field(1e-7) == "1e-07"
    assert encode_field(-0.0) == "-0.0"
    assert float(encode_field(1 / 3) or "") == 1 / 3


def test_unsupported_type() -> None:
    with pytest.raises(TypeError):
        encode_field([1])  # type: ignore[arg-type]
