"""The pure CSRF decision of the local listener (gateway.core.csrf)."""

from __future__ import annotations

import pytest

from gateway.core.csrf import csrf_refusal, listener_origins, parse_origin

HERE = listener_origins("127.0.0.1:7203", ["https://traza-mx.police.example"])


def test_parse_origin_normalises_and_refuses_what_is_not_an_origin():
    assert parse_origin("https://LocalHost:7203") == ("https", "localhost", 7203)
    assert parse_origin("https://[::1]:7203") == ("https", "::1", 7203)
    assert parse_origin("https://traza.example") == ("https", "traza.example", 443)
    for bad in ("null", "http://127.0.0.1:7203", "https://127.0.0.1:7203/ui", "https://u@h:1", "https://h:99999",
                "", "https://", "javascript:1"):
        assert parse_origin(bad) is None, bad


def test_listener_origins_loopback_names_wildcard_and_extra():
    assert HERE == {("https", h, 7203) for h in ("127.0.0.1", "localhost", "::1")} | {
        ("https", "traza-mx.police.example", 443)}
    assert listener_origins("10.0.0.5:8444") == {("https", "10.0.0.5", 8444)}
    assert listener_origins("0.0.0.0:8444") == frozenset()  # a wildcard bind names no origin by itself
    with pytest.raises(ValueError, match="not an origin"):
        listener_origins("127.0.0.1:1", ["http://x"])


@pytest.mark.parametrize(("method", "path", "origin", "site", "marker", "refused"), [
    ("GET", "/ops/v1/status", "https://evil.example", "cross-site", None, None),  # safe methods pass
    ("HEAD", "/local/v1/blobs/x", "https://evil.example", None, None, None),
    ("POST", "/ops/v1/dead-letters/1/discard", "https://evil.example", None, "1", "Origin 'https://evil.example'"),
    ("POST", "/ops/v1/dead-letters/1/discard", "null", None, "1", "Origin 'null'"),
    ("POST", "/ops/v1/dead-letters/1/discard", "https://127.0.0.1:7204", None, "1", "Origin"),  # another node
    ("POST", "/ops/v1/dead-letters/1/discard", None, "same-site", "1", "Sec-Fetch-Site is 'same-site'"),
    ("POST", "/ops/v1/dead-letters/1/discard", None, "none", "1", "Sec-Fetch-Site"),
    ("POST", "/ops/v1/dead-letters/1/discard", "https://127.0.0.1:7203", "same-origin", None, "X-Traza-Request"),
    ("POST", "/ops/v1/dead-letters/1/discard", None, None, " ", "X-Traza-Request"),
    ("DELETE", "/audit/v1/entries", None, None, None, "X-Traza-Request"),
    ("PUT", "/ui/api/whoami", None, None, None, "X-Traza-Request"),
    ("POST", "/v1/audit/checkpoint", None, None, None, "X-Traza-Request"),
    ("POST", "/ops/v1/dead-letters/1/discard", "https://localhost:7203", "same-origin", "dashboard", None),
    ("POST", "/ops/v1/dead-letters/1/discard", "https://traza-mx.police.example", "same-origin", "x", None),
    ("POST", "/ops/v1/dead-letters/1/discard", None, None, "traza-cli", None),
    ("POST", "/local/v1/messages", None, None, None, None),  # a national system: no browser headers
    ("POST", "/local/v1/messages", "https://evil.example", None, None, "Origin"),
    ("PUT", "/local/v1/blobs/x", None, "cross-site", None, "Sec-Fetch-Site"),
])
def test_csrf_refusal(method, path, origin, site, marker, refused):
    why = csrf_refusal(method, path, origin, site, marker, HERE)
    if refused is None:
        assert why is None, why
    else:
        assert why is not None and refused in why, why


def test_attacker_text_in_the_reason_is_quoted_and_cut():
    why = csrf_refusal("POST", "/ops/x", "https://e\x1b[31m" + "a" * 500, None, "1", HERE)
    assert why is not None and "\x1b" not in why and len(why) < 400, why
