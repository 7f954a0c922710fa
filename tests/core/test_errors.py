"""Whose fault an error is, and the one mapping of errors to HTTP statuses (gateway/core/errors.py)."""

from __future__ import annotations

import pytest

from gateway.core.errors import FAULT, Code, Fault, TrazaError, http_status


def test_every_code_says_whose_fault_it_is():
    assert set(FAULT) == set(Code)


@pytest.mark.parametrize(("code", "fault"), [
    (Code.PEER_MISMATCH, Fault.PEER), (Code.BAD_SIGNATURE, Fault.PEER), (Code.SCHEMA_INVALID, Fault.ORIGIN),
    (Code.EXPIRED, Fault.ORIGIN), (Code.OVERLOADED, Fault.INTERNAL)])
def test_fault_of_a_code(code, fault):
    assert TrazaError(code, "x").fault is fault


# code → (peer API, local API)
STATUS = [
    (Code.MALFORMED, 400, 400), (Code.TOO_LARGE, 413, 413), (Code.OVERLOADED, 503, 503), (Code.INTERNAL, 500, 500),
    (Code.SCHEMA_INVALID, 400, 422), (Code.POLICY_DENIED, 400, 422), (Code.EXPIRED, 400, 422),
]


@pytest.mark.parametrize(("code", "peer", "local"), STATUS)
def test_status_table(code, peer, local):
    assert http_status(code) == http_status(TrazaError(code, "x")) == peer
    assert http_status(code, "local") == http_status(TrazaError(code, "x"), "local") == local


def test_an_operator_action_refused_on_the_state_of_things_is_a_conflict():
    refused = TrazaError(Code.EXPIRED, "expired; a signed expiry cannot be extended", fault=Fault.OPERATOR)
    assert refused.fault is Fault.OPERATOR
    assert http_status(refused, "local") == http_status(refused) == 409
