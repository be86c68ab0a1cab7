"""Whatever the host hands a Keep, parsing it fails only with the platform's own error."""

from __future__ import annotations

import contextlib
import uuid

from hypothesis import given, settings
from hypothesis import strategies as st

from donjon.keep.platforms.base import PlatformError
from donjon.keep.platforms.sgx import quote_report_data as sgx_report_data
from donjon.keep.platforms.snp import GUID_VCEK, build_cert_table, parse_cert_table
from donjon.keep.platforms.tdx import quote_report_data as tdx_report_data


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_cert_table_garbage(blob: bytes) -> None:
    try:
        table = parse_cert_table(blob)
    except PlatformError:
        return
    assert all(isinstance(v, bytes) and v for v in table.values())


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.uuids(), st.binary(min_size=1, max_size=64), max_size=5))
def test_cert_table_round_trip(entries: dict[uuid.UUID, bytes]) -> None:
    table = {k: v for k, v in entries.items() if k.bytes != bytes(16)}
    assert parse_cert_table(build_cert_table(table)) == table


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=1200))
def test_quote_garbage(blob: bytes) -> None:
    for parse in (tdx_report_data, sgx_report_data):
        with contextlib.suppress(PlatformError):
            assert len(parse(blob, "test")) == 64


def test_vcek_guid_is_known() -> None:
    assert str(GUID_VCEK) == "63da758d-e664-4564-adc5-f4b93be8accd"
