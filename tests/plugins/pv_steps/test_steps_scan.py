"""pv_steps.scan: the large-file scanner accepts and refuses exactly what strict json.loads does."""
import json

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from pv_steps import scan

SHA = "a" * 64


def _needed(key):
    return key == "#spec" or key.endswith("/run.json")


def _both(tmp_path, data: bytes, monkeypatch):
    """``(small path result, large path result)`` for the same bytes."""
    path = tmp_path / "json"
    path.write_bytes(data)
    small = scan.scan_state(str(path), _needed)
    monkeypatch.setattr(scan, "SMALL", 0)
    try:
        large = scan.scan_state(str(path), _needed)
    finally:
        monkeypatch.undo()
    return small, large


def _agree(small, large):
    assert (small is None) == (large is None), (small, large)
    if small is None:
        return
    assert small.objects == large.objects
    for key, value in large.state.items():
        assert value == small.state[key] or key not in small.state
    # everything the validator reads, and every object reference, is kept
    assert {k for k in small.state if _needed(k)} <= set(large.state)
    assert {k for k, v in small.state.items() if v in small.objects} <= set(large.state)


_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text()
_json = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner,
                                                                                          max_size=4), max_leaves=20)
_keys = st.sampled_from(["#spec", "a/run.json", "b", "c/x", "\u00e9", "a\\u0062", "", "x" * 70])

_FRAGMENTS = [b"{", b"}", b"[", b"]", b",", b":", b'"a"', b'"b"', b' ', b"1", b"-0.5e3", b"true", b"null",
              b'"\\u0061"', b'"\\x"', b"NaN", b"01", b'"\x01"', b"\xc3\xa9", b"\xff", b'"' + SHA.encode() + b'"',
              b'"a/run.json"', b"[]", b"{}", b"\n", b"1e400", b"-"]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=st.dictionaries(_keys | st.text(max_size=6), _json | st.just(SHA), max_size=6),
       indent=st.sampled_from([None, 0, 2]))
def test_valid_documents_agree(tmp_path, monkeypatch, doc, indent):
    data = json.dumps(doc, indent=indent, ensure_ascii=indent is None).encode()
    small, large = _both(tmp_path, data, monkeypatch)
    assert small is not None and large is not None
    _agree(small, large)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(parts=st.lists(st.sampled_from(_FRAGMENTS), max_size=14))
@example(parts=[b'{"a":{"x":1,"x":2}}'])
@example(parts=[b'{"a":{"x":1,"\\u0078":2}}'])
@example(parts=[b'{"a":[{"k":1},{"k":1}]}'])
@example(parts=[b'{"a":"', b"\xed\xa0\x80", b'"}'])
@example(parts=[b'\xef\xbb\xbf{}'])
@example(parts=[b'{"a":[1,]}'])
@example(parts=[b'{"a":{"b":1,}}'])
@example(parts=[b'{"a":1}x'])
@example(parts=[b'{"a":1', b"2" * 4400, b"}"])
@example(parts=[b'{"a":[1', b"2" * 4400, b"]}"])
@example(parts=[b'{"a":1', b"2" * 4400, b".5}"])
@example(parts=[b'{"a":"', b"\\n" * 600, b'"}'])
@example(parts=[b'{"a/run.json":{"name":"', b"\\t" * 600, b'"}}'])
def test_any_bytes_agree(tmp_path, monkeypatch, parts):
    small, large = _both(tmp_path, b"".join(parts), monkeypatch)
    _agree(small, large)


@pytest.mark.parametrize("depth", [scan.MAX_DEPTH - 1, scan.MAX_DEPTH, scan.MAX_DEPTH + 1])
@pytest.mark.parametrize("inner", [b"", b"1", b"[]", b"{}"])
def test_nesting_limit_is_the_same_on_both_paths(tmp_path, monkeypatch, depth, inner):
    # depth counts the top-level object: {"a": [[...]]}
    data = b'{"a":' + b"[" * (depth - 1) + inner + b"]" * (depth - 1) + b"}"
    small, large = _both(tmp_path, data, monkeypatch)
    _agree(small, large)
    levels = depth + (1 if inner in (b"[]", b"{}") else 0)
    assert (small is not None) == (levels <= scan.MAX_DEPTH)


def test_large_path_keeps_only_what_is_read(tmp_path, monkeypatch):
    doc = {"#spec": "pantavisor-service-system@1", "a/run.json": {"name": "a"}, "a/root.squashfs": SHA,
           "a/config": {"big": list(range(100))}, "note": "b" * 64}
    path = tmp_path / "json"
    path.write_text(json.dumps(doc))
    monkeypatch.setattr(scan, "SMALL", 0)
    result = scan.scan_state(str(path), _needed)
    assert result.state == {"#spec": "pantavisor-service-system@1", "a/run.json": {"name": "a"},
                            "a/root.squashfs": SHA, "note": "b" * 64}
    assert result.objects == [SHA, "b" * 64]


def test_a_read_value_larger_than_the_limit_is_refused(tmp_path, monkeypatch):
    doc = {"#spec": "pantavisor-service-system@1", "a/run.json": {"name": "a", "pad": "p" * 2000}}
    path = tmp_path / "json"
    path.write_text(json.dumps(doc))
    monkeypatch.setattr(scan, "SMALL", 0)
    monkeypatch.setattr(scan, "NEEDED_MAX", 1000)
    assert scan.scan_state(str(path), _needed) is None


@pytest.mark.parametrize("doc", [
    {"a": 1, "b": 2, "c": 3, "d": 4},
    {"x": {"a": 1, "b": 2, "c": 3, "d": 4}},
    {"x": [{"a": [], "b": {}, "c": [1], "d": {"e": 1}}]},
])
def test_an_object_with_too_many_keys_is_refused(tmp_path, monkeypatch, doc):
    path = tmp_path / "json"
    path.write_text(json.dumps(doc))
    monkeypatch.setattr(scan, "SMALL", 0)
    monkeypatch.setattr(scan, "MAX_KEYS", 4)
    assert scan.scan_state(str(path), _needed) is not None
    monkeypatch.setattr(scan, "MAX_KEYS", 3)
    assert scan.scan_state(str(path), _needed) is None


def test_many_top_level_keys_find_their_duplicate(tmp_path, monkeypatch):
    members = ", ".join(f'"k{i}": {i}' for i in range(20000))
    path = tmp_path / "json"
    monkeypatch.setattr(scan, "SMALL", 0)
    path.write_text("{" + members + "}")
    assert scan.scan_state(str(path), _needed) is not None
    path.write_text("{" + members + ', "k12345": {}}')
    assert scan.scan_state(str(path), _needed) is None
    path.write_text("{" + members + ', "k1234\\u0035": {}}')
    assert scan.scan_state(str(path), _needed) is None
