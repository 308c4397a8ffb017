"""The malformed-request table: every entry is refused with its status.

The table lives in ``parser_cases`` so the socket tests can send the same
bytes to a running server.  Each entry is fed whole, split in two at every
offset and byte by byte (sampled for the multi-kilobyte ones), and must be
refused with the same status each way, with no request accepted before the
refusal.  The valid table is the control: the same harness accepts those.
"""

import pytest

from parser_cases import MALFORMED, VALID
from parser_harness import outcome, parse_one


@pytest.mark.parametrize("data, status", [pytest.param(d, s, id=i) for i, d, s in MALFORMED])
def test_malformed_request_is_refused(data, status):
    result = outcome(data)
    assert result.requests == []
    assert result.status == status, result.reason


@pytest.mark.parametrize("data, expected", [pytest.param(d, e, id=i) for i, d, e in VALID])
def test_valid_request_is_accepted(data, expected):
    request = parse_one(data)
    assert {key: request[key] for key in expected} == expected


def test_table_ids_are_unique():
    ids = [case[0] for case in MALFORMED + VALID]
    assert len(ids) == len(set(ids))
