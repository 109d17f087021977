"""State signatures: pvs@2 documents, their payload, their keys (docs/protocol.md §D12).

:func:`verify_state` is the whole check of one stored state JSON under one
secure boot mode. It answers ``None`` when the state may run, else upstream's
result text (``Signature validation failed``, ``State not fully covered by
signatures``, ``Internal error``). The cryptography (X.509 path validation,
RSA and ECDSA) is the ``cryptography`` package's; what is pvcore's own is the
raw-text payload (:mod:`pv_secureboot.members`) and the globs
(:mod:`pv_secureboot.globs`).
"""
from __future__ import annotations

import base64
import binascii
import datetime
import hashlib
import json
import mmap
import os
import threading
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Sequence

import structlog
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from cryptography.x509 import verification
from cryptography.x509.oid import NameOID

from pv_secureboot.globs import matches_any
from pv_secureboot.members import OBJECT, MalformedState, Member, members

log = structlog.get_logger(__name__)

DISABLED, AUDIT, LENIENT, STRICT = "disabled", "audit", "lenient", "strict"
MODES = (DISABLED, AUDIT, LENIENT, STRICT)

INTERNAL = "Internal error"
UNCOVERED = "State not fully covered by signatures"
VALIDATION = "Signature validation failed"

SPEC = "pvs@2"
TYP = "PVS"
SIGS_PREFIX = "_sigs/"
#: JWS alg → (key family, digest)
ALGS = {
    "RS256": (rsa.RSAPublicKey, hashes.SHA256),
    "ES256": (ec.EllipticCurvePublicKey, hashes.SHA256),
    "ES384": (ec.EllipticCurvePublicKey, hashes.SHA384),
    "ES512": (ec.EllipticCurvePublicKey, hashes.SHA512),
}
#: Upstream's path limit on a chain (mbedTLS' MBEDTLS_X509_MAX_INTERMEDIATE_CA).
MAX_CHAIN_DEPTH = 8
_CHUNK = 3 << 16  # payload bytes hashed per step: a multiple of 3, so base64 needs no carry


_ONE_AT_A_TIME = threading.Lock()


class Refused(Exception):
    """One signature does not verify; the message says why (logged, never shown)."""


@dataclass(frozen=True)
class Trust:
    """Where keys come from: ``<etc_dir>/pantavisor/pvs/trust/`` holds the
    truststores (``<name>.crt``) and the on-disk public key (``pub.pem``).

    :ivar now: the time chains are validated at (``None``: now).
    """

    etc_dir: str = "/etc"
    truststore: str = "ca-certificates"
    oem_truststore: str = "ca-oem-certificates"
    oem_name: Optional[str] = None
    now: Optional[datetime.datetime] = None

    @property
    def directory(self) -> str:
        return os.path.join(self.etc_dir, "pantavisor", "pvs", "trust")

    def store_path(self, name: str) -> str:
        return os.path.join(self.directory, name + ".crt")

    @property
    def public_key_path(self) -> str:
        return os.path.join(self.directory, "pub.pem")


@dataclass
class Signature:
    """One pvs@2 document found in the state: its key and its two fields."""

    key: str
    protected: str
    signature: str


def _b64url_decode(text: str) -> bytes:
    if not isinstance(text, str):
        raise Refused("not a string")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise Refused("bad base64url") from None


def _string_list(value, name: str) -> List[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise Refused(f"pvs {name} is not a list of strings")
    return value


# -- the state's members and its signatures -------------------------------------------


def find_signatures(buf, state: Iterable[Member]) -> List[Signature]:
    """Every member whose value is a pvs@2 document, wherever it is (as upstream)."""
    found = []
    for member in state:
        # NOTE: only objects can be one, and only those mentioning pvs@2 are parsed.
        if member.kind != OBJECT or buf.find(b'"' + SPEC.encode() + b'"', member.start, member.end) < 0:
            continue
        try:
            doc = json.loads(bytes(buf[member.start:member.end]))
        except ValueError:
            continue
        if doc.get("#spec") != SPEC:
            continue
        protected, signature = doc.get("protected"), doc.get("signature")
        # A pvs@2 document without both is not a signature (upstream skips it too).
        if isinstance(protected, str) and isinstance(signature, str):
            found.append(Signature(member.key, protected, signature))
    return found


def parse_header(sig: Signature) -> Dict:
    try:
        header = json.loads(_b64url_decode(sig.protected))
    except ValueError:
        raise Refused("protected header is not JSON") from None
    if not isinstance(header, dict) or header.get("typ") != TYP:
        raise Refused("protected header typ is not PVS")
    pvs = header.get("pvs")
    if not isinstance(pvs, dict):
        raise Refused("protected header has no pvs")
    _string_list(pvs.get("include"), "include")
    _string_list(pvs.get("exclude"), "exclude")
    if header.get("alg") not in ALGS:
        raise Refused(f"unsupported alg {header.get('alg')!r}")
    if "x5c" in header:
        _string_list(header["x5c"], "x5c")
        if not header["x5c"]:
            raise Refused("empty x5c")
    return header


# -- the payload ----------------------------------------------------------------------


class Payload:
    """The hash of ``protected + "." + base64url(payload)``, fed member by member.

    The payload is ``{"<key>":<value>,...}``: each covered member as its raw
    key text and raw value text, in file order; with nothing covered it is
    ``}`` (upstream's, §12). It is base64-encoded and hashed as it comes, so
    it is never held whole.
    """

    def __init__(self, protected: str, digest):
        self._hasher = hashlib.new(digest.name)
        self._hasher.update(protected.encode("ascii", "replace") + b".")
        self._pending = bytearray()
        self._count = 0

    def _feed(self, data) -> None:
        self._pending.extend(data)
        if len(self._pending) >= _CHUNK:
            cut = len(self._pending) - len(self._pending) % 3
            self._hasher.update(base64.urlsafe_b64encode(bytes(self._pending[:cut])))
            del self._pending[:cut]

    def add(self, buf, member: Member) -> None:
        self._feed((b"{" if self._count == 0 else b",") + b'"' + member.key.encode("utf-8", "surrogateescape")
                   + b'":')
        for start in range(member.start, member.end, _CHUNK):
            self._feed(buf[start:min(start + _CHUNK, member.end)])
        self._count += 1

    def digest(self) -> bytes:
        self._feed(b"}")  # closes the object, or is the whole payload when nothing is covered
        self._hasher.update(base64.urlsafe_b64encode(bytes(self._pending)).rstrip(b"="))
        return self._hasher.digest()


def signing_input_digest(buf, sig: Signature, covered: Iterable[Member], digest) -> bytes:
    """:class:`Payload`'s digest for ``sig`` over the members ``covered``."""
    payload = Payload(sig.protected, digest)
    for member in covered:
        payload.add(buf, member)
    return payload.digest()


# -- keys -----------------------------------------------------------------------------


def _common_name(cert: x509.Certificate) -> Optional[str]:
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[-1].value) if names else None


def _load_roots(path: str) -> List[x509.Certificate]:
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise Refused(f"truststore unreadable: {path}: {exc.strerror}") from None
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_certificates(data)
        return [x509.load_der_x509_certificate(data)]
    except ValueError:
        raise Refused(f"truststore unparsable: {path}") from None


def _ca_basic_constraints(policy, cert, value) -> None:
    if value is None or not value.ca:
        raise ValueError("an issuer must be a CA")


def _ca_key_usage(policy, cert, value) -> None:
    if value is not None and not value.key_cert_sign:
        raise ValueError("an issuer's key usage must allow signing certificates")


def _policies():
    # What mbedTLS' default verification (upstream's) checks of a chain: issuers
    # are CAs allowed to sign certificates; nothing is required of the signer's
    # own extensions (pvr's leaves are codeSigning, not clientAuth).
    ca = (verification.ExtensionPolicy.permit_all()
          .require_present(x509.BasicConstraints, verification.Criticality.AGNOSTIC, _ca_basic_constraints)
          .may_be_present(x509.KeyUsage, verification.Criticality.AGNOSTIC, _ca_key_usage))
    return ca, verification.ExtensionPolicy.permit_all()


def chain_key(x5c: Sequence[str], trust: Trust, oem_signable: bool):
    """The leaf's public key once its chain validates against the right truststore."""
    try:
        chain = [x509.load_der_x509_certificate(base64.b64decode(item, validate=True)) for item in x5c]
    except (binascii.Error, ValueError):
        raise Refused("x5c certificate unparsable") from None
    leaf = chain[0]
    store = trust.truststore
    if oem_signable and trust.oem_name and _common_name(leaf) == trust.oem_name:
        store = trust.oem_truststore
    path = trust.store_path(store)
    roots = _load_roots(path)
    ca_policy, ee_policy = _policies()
    builder = (verification.PolicyBuilder().store(verification.Store(roots)).max_chain_depth(MAX_CHAIN_DEPTH)
               .extension_policies(ca_policy=ca_policy, ee_policy=ee_policy))
    builder = builder.time(trust.now or datetime.datetime.now(datetime.timezone.utc))
    try:
        builder.build_client_verifier().verify(leaf, chain[1:])
    except (verification.VerificationError, ValueError) as exc:
        raise Refused(f"certificate chain does not validate against {path}: {exc}") from None
    return leaf.public_key()


def disk_key(trust: Trust):
    path = trust.public_key_path
    try:
        with open(path, "rb") as fh:
            return serialization.load_pem_public_key(fh.read())
    except OSError as exc:
        raise Refused(f"public key unreadable: {path}: {exc.strerror}") from None
    except (ValueError, UnsupportedAlgorithm):
        raise Refused(f"public key unparsable: {path}") from None


def check_signature(key, alg: str, signature: bytes, digest_value: bytes) -> None:
    family, digest = ALGS[alg]
    if not isinstance(key, family):
        raise Refused(f"{alg} needs a {'RSA' if family is rsa.RSAPublicKey else 'EC'} key")
    prehashed = utils.Prehashed(digest())
    try:
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, digest_value, padding.PKCS1v15(), prehashed)
            return
        size = (key.curve.key_size + 7) // 8
        candidates = []
        if len(signature) == 2 * size:  # JWS' r‖s, what pvr writes (§12)
            candidates.append(utils.encode_dss_signature(int.from_bytes(signature[:size], "big"),
                                                         int.from_bytes(signature[size:], "big")))
        if signature[:1] == b"\x30":  # DER, what upstream's mbedTLS takes
            candidates.append(signature)
        for candidate in candidates:
            try:
                key.verify(candidate, digest_value, ec.ECDSA(prehashed))
                return
            except InvalidSignature:
                continue
    except InvalidSignature:
        pass
    raise Refused("signature does not match")


# -- the check ------------------------------------------------------------------------


class _Check:
    """One signature being verified: its globs, its payload, whether an OEM may sign it."""

    def __init__(self, sig: Signature, header: Dict, oem_name: Optional[str]):
        self.sig = sig
        self.header = header
        self.include, self.exclude = header["pvs"]["include"], header["pvs"]["exclude"]
        self.payload = Payload(sig.protected, ALGS[header["alg"]][1]())
        self.reserved = ["bsp/**"] + ([oem_name + "/**"] if oem_name else [])
        self.oem_signable = True

    def take(self, buf, member: Member) -> bool:
        """Feed ``member`` if this signature includes it; whether it names it at all
        (an excluded key counts as covered, as upstream: §12)."""
        named_in, named_out = matches_any(self.include, member.key), matches_any(self.exclude, member.key)
        if named_in and not named_out:
            self.payload.add(buf, member)
            if self.oem_signable and matches_any(self.reserved, member.key):
                self.oem_signable = False
        return named_in or named_out

    def verify(self, trust: Trust) -> None:
        if "x5c" in self.header:
            key = chain_key(self.header["x5c"], trust, self.oem_signable)
        else:
            key = disk_key(trust)
        check_signature(key, self.header["alg"], _b64url_decode(self.sig.signature), self.payload.digest())


def verify_buffer(buf, mode: str, trust: Trust) -> Optional[str]:
    """:func:`verify_state` over a state already in memory or mapped.

    Two passes over the members, neither keeping them: the first finds the
    signatures, the second feeds every signature's payload and counts what
    no signature names. Memory is the signatures', whatever the state's size.
    """
    if mode == DISABLED:
        return None
    try:
        # NOTE: a state naming no pvs@2 anywhere has no signature: one scan less.
        sigs = find_signatures(buf, members(buf)) if buf.find(b'"' + SPEC.encode() + b'"') >= 0 else []
    except (MalformedState, IndexError):
        log.error("secureboot_state_unreadable", reason="not one JSON object")
        return INTERNAL
    result = None
    checks = []
    for sig in sigs:
        try:
            checks.append(_Check(sig, parse_header(sig), trust.oem_name))
        except Refused as exc:
            log.warning("secureboot_signature_refused", signature=sig.key, reason=str(exc))
            result = VALIDATION
    coverage = mode in (STRICT, AUDIT)
    uncovered, count = [], 0
    if checks or coverage:
        try:
            for member in members(buf):
                named = False
                for check in checks:
                    named = check.take(buf, member) or named
                if coverage and not named and not member.key.startswith(SIGS_PREFIX):
                    count += 1
                    if len(uncovered) < 10:
                        uncovered.append(member.key)
                    elif not checks:
                        break  # nothing signs: enough is known (the count is "at least")
        except (MalformedState, IndexError):
            log.error("secureboot_state_unreadable", reason="not one JSON object")
            return INTERNAL
    for check in checks:
        try:
            check.verify(trust)
            log.debug("secureboot_signature_ok", signature=check.sig.key)
        except Refused as exc:
            log.warning("secureboot_signature_refused", signature=check.sig.key, reason=str(exc))
            result = VALIDATION
    if result is None and count:
        # Audit mode only logs what strict mode refuses (upstream's audit
        # still refuses a signature that does not verify).
        log.warning("secureboot_state_not_covered", mode=mode, keys=uncovered, count=count)
        if mode == STRICT:
            result = UNCOVERED
    return result


def verify_state(path: str, mode: str, trust: Trust) -> Optional[str]:
    """Check the state JSON stored at ``path`` under secure boot ``mode``.

    :return: ``None`` when it may run, else upstream's result text.
    """
    if mode == DISABLED:
        return None
    try:
        # One check at a time: a state's mapped pages count in the worker's RSS
        # while it is read, so concurrent PUTs of large states must not add up
        # (docs/architecture.md, "Memory").
        with _ONE_AT_A_TIME, open(path, "rb") as fh:
            if os.fstat(fh.fileno()).st_size == 0:
                return INTERNAL
            with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
                try:
                    return verify_buffer(buf, mode, trust)
                finally:
                    buf.madvise(mmap.MADV_DONTNEED)
    except OSError as exc:
        log.error("secureboot_state_unreadable", path=path, error=exc.strerror)
        return INTERNAL
