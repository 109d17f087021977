"""pvs@2 verification in-process: raw members, globs, keys, modes and upstream's quirks
(docs/protocol.md §D12, §12), and upstream's own signed states when its repository is here."""
import base64
import datetime
import glob
import json
import os
import shutil

import pytest

from pv_secureboot import pvs
from pv_secureboot.globs import matches
from pv_secureboot.members import MalformedState, members
from secureboot_helpers import OEM_NAME, app_state, compact, sign, with_signature

ALL = ["#spec", "bsp/**", "app/**", f"{OEM_NAME}/**"]
UPSTREAM = os.environ.get("PVCORE_UPSTREAM_DIR", "/work/upstream")
RESOURCES = os.path.join(UPSTREAM, "test", "pvtx", "resources")
SIGNED_IN_2023 = datetime.datetime(2023, 1, 1, tzinfo=datetime.timezone.utc)


def trust(etc_dir, **kwargs):
    return pvs.Trust(etc_dir=etc_dir, oem_name=OEM_NAME, **kwargs)


# -- raw members ------------------------------------------------------------------------


def test_members_are_the_raw_text_in_file_order():
    text = b' { "b" : {"x": "}]\\"{", "y": [1, {"z": null}]} ,\n "a\\u0041":"v", "n": -1.5e3, "t": true }\n'
    found = list(members(text))
    assert [m.key for m in found] == ["b", "a\\u0041", "n", "t"]
    assert [text[m.start:m.end] for m in found] == [b'{"x": "}]\\"{", "y": [1, {"z": null}]}', b'"v"', b"-1.5e3",
                                                    b"true"]
    assert [m.kind for m in found] == ["object", "string", "primitive", "primitive"]
    assert list(members(b"{}")) == []


@pytest.mark.parametrize("text", [b"", b"[]", b'{"a":1', b'{"a":[1}', b'{"a":1}x', b'{"a" 1}', b'{"a":"\x01"}',
                                  b'{"a":{"b":"c"]}', b'{"a":1,}', b'{1:2}'])
def test_members_refuse_what_is_not_one_object(text):
    with pytest.raises((MalformedState, IndexError)):
        list(members(text))


# -- globs ------------------------------------------------------------------------------


@pytest.mark.parametrize("glob,key,expected", [
    ("app/**", "app", True),
    ("app/**", "app/run.json", True),
    ("app/**", "app/a/b/c", True),
    ("app/**", "application/run.json", False),
    ("app/*", "app/run.json", True),
    ("app/*", "app/a/b", False),  # '*' never crosses '/'
    ("*", "#spec", True),
    ("*", "app/run.json", False),
    ("_config/*/etc/**", "_config/app/etc/x/y", True),
    ("app/run.jso?", "app/run.json", True),
    ("app/[rs]un.json", "app/run.json", True),
    ("app/[!r]un.json", "app/run.json", False),
    ("a[/]b", "a/b", False),
    ("app/\\*", "app/*", True),
    ("app/\\*", "app/x", False),
    ("**", "app/run.json", False),  # upstream's "**" names nothing a key can be (§12)
    ("bsp/run.json", "bsp/run.json", True),
    ("bsp/run.json", "bsp/run.jsonx", False),
])
def test_globs(glob, key, expected):
    assert matches(glob, key) is expected


# -- one signature ----------------------------------------------------------------------


def verify(state_bytes, mode, trust_):
    return pvs.verify_buffer(state_bytes, mode, trust_)


def test_rsa_chain_and_every_ec_curve_verify(pki, etc_dir):
    state = app_state()
    for identity in [pki.rsa, *pki.ec.values()]:
        signed = with_signature(state, "all", sign(state, identity, ALL))
        assert verify(compact(signed), pvs.STRICT, trust(etc_dir)) is None


def test_ecdsa_in_der_is_taken_too(pki, etc_dir):
    state = app_state()
    signed = with_signature(state, "all", sign(state, pki.ec["ES256"], ALL, der=True))
    assert verify(compact(signed), pvs.STRICT, trust(etc_dir)) is None


def test_alg_must_fit_the_key(pki, etc_dir):
    state = app_state()
    doc = sign(state, pki.ec["ES256"], ALL)
    header = json.loads(base64.urlsafe_b64decode(doc["protected"] + "=="))
    header["alg"] = "RS256"
    doc["protected"] = base64.urlsafe_b64encode(json.dumps(header).encode()).rstrip(b"=").decode()
    assert verify(compact(with_signature(state, "all", doc)), pvs.LENIENT, trust(etc_dir)) == pvs.VALIDATION


def test_without_x5c_the_on_disk_key_verifies(pki, etc_dir, tmp_path):
    state = app_state()
    signed = compact(with_signature(state, "all", sign(state, pki.disk, ALL, x5c=False)))
    assert verify(signed, pvs.STRICT, trust(etc_dir)) is None
    assert verify(signed, pvs.STRICT, trust(str(tmp_path))) == pvs.VALIDATION  # no pub.pem there


def test_a_missing_truststore_refuses(pki, tmp_path):
    state = app_state()
    signed = compact(with_signature(state, "all", sign(state, pki.rsa, ALL)))
    assert verify(signed, pvs.LENIENT, trust(str(tmp_path))) == pvs.VALIDATION


def test_truststore_name_comes_from_the_setting(pki, tmp_path):
    etc = pki.install(str(tmp_path), truststore="mine")
    state = app_state()
    signed = compact(with_signature(state, "all", sign(state, pki.rsa, ALL)))
    assert verify(signed, pvs.LENIENT, trust(etc, truststore="mine")) is None
    assert verify(signed, pvs.LENIENT, trust(etc)) == pvs.VALIDATION


def test_payload_is_the_stored_raw_text(pki, etc_dir):
    state = app_state()
    signed = with_signature(state, "all", sign(state, pki.rsa, ALL))
    # The same document reformatted is not what was signed (upstream reads raw text too).
    assert verify(json.dumps(signed, indent=2).encode(), pvs.LENIENT, trust(etc_dir)) == pvs.VALIDATION
    # Whitespace between members is not part of any value.
    spaced = b"{\n" + b",\n".join(
        json.dumps(k).encode() + b" : " + json.dumps(v, separators=(",", ":")).encode() for k, v in signed.items()
    ) + b"\n}"
    assert verify(spaced, pvs.LENIENT, trust(etc_dir)) is None


def test_excluded_keys_count_as_covered(pki, etc_dir):
    state = dict(app_state(), **{"app/src.json": {"pvr": "metadata"}})
    signed = with_signature(state, "app", sign(state, pki.rsa, ALL, exclude=["app/src.json"]))
    tampered = dict(signed, **{"app/src.json": {"pvr": "anything"}})
    # Upstream's rule (§12): the signer named it as deliberately unsigned.
    assert verify(compact(tampered), pvs.STRICT, trust(etc_dir)) is None


def test_a_signature_covering_nothing_is_checked_over_a_brace(pki, etc_dir):
    state = app_state()
    signed = with_signature(state, "all", sign(state, pki.rsa, ALL))
    nothing = with_signature(signed, "none", sign(signed, pki.rsa, ["nothing/**"]))
    assert verify(compact(nothing), pvs.LENIENT, trust(etc_dir)) is None


def test_a_pvs_document_without_a_signature_is_not_one(pki, etc_dir):
    state = dict(app_state(), **{"_sigs/odd.json": {"#spec": "pvs@2", "protected": "e30"}})
    assert verify(compact(state), pvs.LENIENT, trust(etc_dir)) is None


def test_malformed_headers_refuse(pki, etc_dir):
    state = app_state()
    for header in [{"alg": "RS256", "typ": "JWT", "pvs": {"include": ["**"], "exclude": []}},
                   {"alg": "RS256", "typ": "PVS", "pvs": {"include": ["**"]}},
                   {"alg": "HS256", "typ": "PVS", "pvs": {"include": ["**"], "exclude": []}},
                   {"alg": "RS256", "typ": "PVS", "pvs": {"include": "**", "exclude": []}},
                   {"alg": "RS256", "typ": "PVS", "pvs": {"include": [], "exclude": []}, "x5c": []}]:
        protected = base64.urlsafe_b64encode(json.dumps(header).encode()).decode().rstrip("=")
        doc = {"#spec": "pvs@2", "protected": protected, "signature": "AAAA"}
        assert verify(compact(with_signature(state, "x", doc)), pvs.LENIENT, trust(etc_dir)) == pvs.VALIDATION
    doc = {"#spec": "pvs@2", "protected": "!!!", "signature": "AAAA"}
    assert verify(compact(with_signature(state, "x", doc)), pvs.LENIENT, trust(etc_dir)) == pvs.VALIDATION


def test_modes(pki, etc_dir):
    state = app_state()
    unsigned = compact(state)
    partly = compact(with_signature(state, "bsp", sign(state, pki.rsa, ["bsp/**"])))
    broken = compact(with_signature(state, "bsp", sign(dict(state, **{"bsp/kernel.img": "9" * 64}), pki.rsa,
                                                       ["bsp/**"])))
    expected = {
        pvs.DISABLED: (None, None, None),
        pvs.LENIENT: (None, None, pvs.VALIDATION),
        pvs.AUDIT: (None, None, pvs.VALIDATION),  # audit only lets coverage pass
        pvs.STRICT: (pvs.UNCOVERED, pvs.UNCOVERED, pvs.VALIDATION),
    }
    for mode, results in expected.items():
        assert tuple(verify(s, mode, trust(etc_dir)) for s in (unsigned, partly, broken)) == results, mode


@pytest.mark.parametrize("text", [b'{"#spec":"x","a":', b'{"_sigs/x.json":{"#spec":"pvs@2"', b"[1]"])
def test_a_broken_state_is_an_internal_error_where_scanned(etc_dir, text):
    assert verify(text, pvs.STRICT, trust(etc_dir)) == pvs.INTERNAL
    assert verify(text, pvs.AUDIT, trust(etc_dir)) == pvs.INTERNAL


def test_verify_state_streams_a_large_state(pki, etc_dir, tmp_path):
    big = dict(app_state(), **{f"app/big-{i}.json": {"data": "x" * 1000} for i in range(3000)})
    big = dict(sorted(big.items()))
    path = tmp_path / "json"
    path.write_bytes(compact(with_signature(big, "all", sign(big, pki.ec["ES384"], ALL))))
    assert pvs.verify_state(str(path), pvs.STRICT, trust(etc_dir)) is None
    assert pvs.verify_state(str(tmp_path / "absent"), pvs.STRICT, trust(etc_dir)) == pvs.INTERNAL


# -- upstream's real signed states ------------------------------------------------------


def _upstream_states():
    if not os.path.isdir(RESOURCES):
        pytest.skip(f"upstream's signed test states are not here ({RESOURCES}); set PVCORE_UPSTREAM_DIR")
    return sorted(glob.glob(os.path.join(RESOURCES, "*.json")))


@pytest.fixture
def upstream_trust(tmp_path):
    """Upstream's development truststores, copied for the test, at a time their leaves were valid."""
    _upstream_states()
    trust_dir = tmp_path / "pantavisor" / "pvs" / "trust"
    trust_dir.mkdir(parents=True)
    for name in ("ca-certificates.crt", "ca-oem-certificates.crt"):
        shutil.copy(os.path.join(UPSTREAM, "pvs", "trust", name), trust_dir / name)
    return pvs.Trust(etc_dir=str(tmp_path), now=SIGNED_IN_2023)


def _as_pvr_stores_it(path):
    # The pvtx test states are kept pretty-printed; pvr stores (and signs) them compact.
    with open(path) as fh:
        return json.dumps(json.load(fh), separators=(",", ":"), ensure_ascii=False).encode()


def test_upstream_signed_states(upstream_trust):
    results = {os.path.basename(p): verify(_as_pvr_stores_it(p), pvs.LENIENT, upstream_trust)
               for p in _upstream_states()}
    signed = {name for name, r in results.items() if r is None}
    assert {"awconnect.json", "bsp_update.json", "config_a_glob.json", "os.json", "state-1.json",
            "vaultwarden.json"} <= signed
    # Its chain ends at a root in neither of upstream's development truststores.
    assert results["bsp_init.json"] == pvs.VALIDATION
    # Its _hostconfig signature covers nothing any more: stale, as upstream finds it.
    assert results["initial_state.json"] == pvs.VALIDATION
    # pvr signs a package, not the state: strict wants #spec covered too.
    assert verify(_as_pvr_stores_it(os.path.join(RESOURCES, "os.json")), pvs.STRICT, upstream_trust) == pvs.UNCOVERED
    assert verify(_as_pvr_stores_it(os.path.join(RESOURCES, "bsp_update.json")), pvs.STRICT, upstream_trust) is None


def test_upstream_states_as_stored_in_the_repository_do_not_verify(upstream_trust):
    # Reformatted after signing: the raw text is no longer what was signed.
    with open(os.path.join(_upstream_states()[0], ), "rb") as fh:
        assert verify(fh.read(), pvs.LENIENT, upstream_trust) == pvs.VALIDATION


def test_upstream_leaves_have_expired(upstream_trust):
    state = _as_pvr_stores_it(os.path.join(RESOURCES, "awconnect.json"))
    assert verify(state, pvs.LENIENT, pvs.Trust(etc_dir=upstream_trust.etc_dir)) == pvs.VALIDATION


def test_upstream_ecdsa_signature_is_raw_r_s(upstream_trust):
    from cryptography import x509

    buf = _as_pvr_stores_it(os.path.join(RESOURCES, "bsp_init.json"))
    state = list(members(buf))
    (sig,) = pvs.find_signatures(buf, state)
    header = pvs.parse_header(sig)
    assert header["alg"] == "ES384"
    raw = base64.urlsafe_b64decode(sig.signature + "==")
    assert len(raw) == 96  # r‖s of P-384, not DER
    include, exclude = header["pvs"]["include"], header["pvs"]["exclude"]
    from pv_secureboot.globs import matches_any

    covered = [m for m in state if matches_any(include, m.key) and not matches_any(exclude, m.key)]
    leaf = x509.load_der_x509_certificate(base64.b64decode(header["x5c"][0]))
    digest = pvs.signing_input_digest(buf, sig, covered, pvs.ALGS["ES384"][1]())
    pvs.check_signature(leaf.public_key(), "ES384", raw, digest)
    with pytest.raises(pvs.Refused):
        pvs.check_signature(leaf.public_key(), "ES384", raw[::-1], digest)
