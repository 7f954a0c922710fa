"""Manifest 1.1 (SPEC §2): ``endpoints`` (the replicas of one node) and ``groups`` (named recipient
lists) are accepted beside version-1 manifests, checked for consistency, and the recipients of a
submission's ``to`` (one node, a list, or ``group:NAME``, SPEC §6 1.1) are resolved by a pure function."""

from __future__ import annotations

import copy
from typing import Any

import msgspec
import pytest
from kit.federation import make_federation

from gateway.core.canonical import canonical_bytes
from gateway.core.errors import Code, TrazaError
from gateway.core.fanout import recipients
from gateway.core.manifest import Federation, ManifestError, decode_manifest


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return make_federation().manifest


def with_(doc: dict[str, Any], **changes: Any) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    out.update(changes)
    return out


def node_with(doc: dict[str, Any], nid: str, **changes: Any) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    node = next(n for n in out["nodes"] if n["id"] == nid)
    node.update(changes)
    for k in [k for k, v in changes.items() if v is None]:
        del node[k]
    return out


def decoded(doc: dict[str, Any]) -> Federation:
    return Federation(decode_manifest(canonical_bytes(doc)))


def test_version_1_manifest_has_one_endpoint_per_node_and_no_groups(doc):
    fed = decoded(doc)
    assert fed.node("es").urls == ("https://127.0.0.1:1",) and fed.groups == {}


def test_endpoints_name_the_replicas_of_a_node(doc):
    fed = decoded(node_with(doc, "latam-hub", endpoint=None,
                            endpoints=["https://10.0.0.1:7200", "https://10.0.0.2:7200/"]))
    assert fed.node("latam-hub").urls == ("https://10.0.0.1:7200", "https://10.0.0.2:7200")


def test_endpoint_and_endpoints_together_are_one_list_without_repeats(doc):
    fed = decoded(node_with(doc, "es", endpoint="https://a:1", endpoints=["https://b:1", "https://a:1"]))
    assert fed.node("es").urls == ("https://a:1", "https://b:1")


@pytest.mark.parametrize(("changes", "fault"), [
    ({"endpoint": None}, "no endpoint"),
    ({"endpoint": None, "endpoints": []}, "no endpoint"),
    ({"endpoint": None, "endpoints": ["ftp://x:1"]}, "not https://host\\[:port\\] \\(it is not https\\)"),
    ({"endpoint": "http://127.0.0.1:1"}, "not https://host\\[:port\\] \\(it is not https\\)"),
])
def test_a_node_without_a_usable_endpoint_is_refused(doc, changes, fault):
    with pytest.raises(ManifestError, match=fault) as info:
        decode_manifest(canonical_bytes(node_with(doc, "es", **changes)))
    assert "nodes[" in str(info.value) and "(es)" in str(info.value)


@pytest.mark.parametrize(("nid", "hub", "fault"), [
    ("mx", "es", "hub 'es' is a national node, not a hub"),
    ("mx", "mx", "hub 'mx' is a national node, not a hub"),
    ("mx", "nowhere", "hub 'nowhere' is not a node of the manifest"),
])
def test_a_hub_that_is_not_a_hub_node_is_refused(doc, nid, hub, fault):
    """SPEC §2: a national or service node names its hub; routes run hub(A) -> hub(B) and hubs are linked
    to each other. A manifest naming a national node (or the node itself) as hub derived broken routes."""
    with pytest.raises(ManifestError, match=f"nodes\\[\\d+\\] \\({nid}\\): {fault}"):
        decode_manifest(canonical_bytes(node_with(doc, nid, hub=hub)))


@pytest.mark.parametrize("url", ["https://127.0.0.1:99999", "https://127.0.0.1:abc", "https://:80",
                                 "https://127.0.0.1:0", "https://127.0.0.1:-1", "https://user@127.0.0.1:7100",
                                 "https://127.0.0.1:7100?x=1", "http://127.0.0.1:7100"])
def test_an_endpoint_that_is_not_https_host_port_is_refused(doc, url):
    with pytest.raises(ManifestError, match=r"endpoint .* is not https://host\[:port\]"):
        decode_manifest(canonical_bytes(node_with(doc, "es", endpoint=url)))


def test_groups_are_named_lists_of_nodes(doc):
    fed = decoded(with_(doc, groups={"eu-registries": ["es", "it", "arms-registry"]}))
    assert fed.groups == {"eu-registries": ("es", "it", "arms-registry")}


@pytest.mark.parametrize(("groups", "fault"), [
    ({"eu-registries": ["es", "fr"]}, "'fr' is not a node of the manifest"),
    ({"eu-registries": []}, "empty"),
    ({"eu-registries": ["es", "es"]}, "repeats 'es'"),
    ({"EU registries": ["es"]}, "is not a group name"),
])
def test_inconsistent_groups_are_refused_naming_the_group(doc, groups, fault):
    with pytest.raises(ManifestError, match=fault) as info:
        decode_manifest(canonical_bytes(with_(doc, groups=groups)))
    assert "groups" in str(info.value)


# --- recipients of a submission (SPEC §6, 1.1) -------------------------------------------------------


GROUPS = {"eu-registries": ("es", "it", "arms-registry"), "latam": ("co",)}


def test_one_recipient_is_not_a_fan_out():
    assert recipients("es", GROUPS, here="mx") is None


def test_a_list_and_a_group_fan_out_in_the_order_given():
    assert recipients(["it", "es"], GROUPS, here="mx") == ["it", "es"]
    assert recipients("group:eu-registries", GROUPS, here="mx") == ["es", "it", "arms-registry"]
    assert recipients(["es"], GROUPS, here="mx") == ["es"]


def test_the_sender_in_its_own_group_is_left_out():
    assert recipients("group:eu-registries", GROUPS, here="es") == ["it", "arms-registry"]


@pytest.mark.parametrize(("to", "path", "fault"), [
    ([], "$.to", "an empty list"),
    (["es", "es"], "$.to[1]", "'es' is listed twice"),
    (["es", 7], "$.to[1]", "expected a node id"),
    (["es", "ES"], "$.to[1]", "'ES' is not a node id"),
    (["es", "mx"], "$.to[1]", "a node does not send to itself"),
    ("group:nobody", "$.to", "no group 'nobody' in the manifest (groups: eu-registries, latam)"),
    ("group:latam", "$.to", "group 'latam' names no node but this one"),
    (7, "$.to", "expected a node id, a list of node ids or group:NAME"),
])
def test_bad_recipients_are_refused_with_the_path(to, path, fault):
    groups = {**GROUPS, "latam": ("mx",)} if to == "group:latam" else GROUPS
    with pytest.raises(TrazaError) as info:
        recipients(to, groups, here="mx")
    assert info.value.code is Code.SCHEMA_INVALID, info.value
    assert fault in info.value.detail and info.value.detail.endswith(f"at `{path}`"), info.value.detail


def test_a_manifest_1_1_round_trips(doc):
    d = with_(node_with(doc, "latam-hub", endpoint=None, endpoints=["https://10.0.0.1:7200", "https://10.0.0.2:7200"]),
              groups={"eu-registries": ["es", "it"]})
    m = decode_manifest(canonical_bytes(d))
    assert decode_manifest(canonical_bytes(msgspec.to_builtins(m))) == m
    assert m.groups == {"eu-registries": ["es", "it"]} and m.nodes[2].endpoints == d["nodes"][2]["endpoints"]
