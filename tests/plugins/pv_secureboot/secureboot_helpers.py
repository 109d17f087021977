"""A throwaway PKI and a pvs@2 signer for the secure boot tests.

The signer is written from the format's description, independently of
pv_secureboot: like pvr it serialises the covered keys compactly in the
state's order, signs ``protected.base64url(payload)`` and writes ECDSA
signatures as JWS' raw ``r‖s``. States are stored compact (as pvr writes
them), so the payload it signs is the stored raw text the device reads.
"""
from __future__ import annotations

import base64
import datetime
import json
import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

SPEC = "pantavisor-service-system@1"
OEM_NAME = "acme"
DIGESTS = {"RS256": hashes.SHA256, "ES256": hashes.SHA256, "ES384": hashes.SHA384, "ES512": hashes.SHA512}
CURVES = {"ES256": ec.SECP256R1, "ES384": ec.SECP384R1, "ES512": ec.SECP521R1}
NOW = datetime.datetime.now(datetime.timezone.utc)
DAY = datetime.timedelta(days=1)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class Identity:
    """A key and its certificate chain (leaf first, root excluded)."""

    key: object
    chain: List[x509.Certificate] = field(default_factory=list)

    @property
    def cert(self) -> x509.Certificate:
        return self.chain[0]


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(subject_key, cn: str, issuer: Optional[Identity], ca: bool, start=None, end=None) -> x509.Certificate:
    issuer_key = subject_key if issuer is None else issuer.key
    issuer_name = _name(cn) if issuer is None else issuer.cert.subject
    builder = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(issuer_name)
               .public_key(subject_key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(start or NOW - DAY).not_valid_after(end or NOW + 365 * DAY)
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=ca)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(subject_key.public_key()), critical=False))
    if ca:
        builder = builder.add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                                        critical=True)
    else:
        builder = builder.add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False),
                                        critical=True)
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
    if issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _issued(key, cn: str, issuer: Optional[Identity], ca: bool, **validity) -> Identity:
    # The chain a signer ships in x5c: its certificate, then the intermediates (no root).
    cert = _cert(key, cn, issuer, ca, **validity)
    above = [c for c in issuer.chain if c.issuer != c.subject] if issuer is not None else []
    return Identity(key, [cert] + above)


def _ca(cn: str, issuer: Optional[Identity] = None) -> Identity:
    return _issued(ec.generate_private_key(ec.SECP384R1()), cn, issuer, ca=True)


def _leaf(key, cn: str, issuer: Identity, **validity) -> Identity:
    return _issued(key, cn, issuer, ca=False, **validity)


class PKI:
    """Roots, an intermediate, leaves of every algorithm, and the bad ones."""

    def __init__(self):
        rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.root = _ca("pvcore test root")
        self.intermediate = _ca("pvcore test intermediate", self.root)
        self.rsa = _leaf(rsa_key, "pvcore test signer", self.intermediate)
        self.ec = {alg: _leaf(ec.generate_private_key(curve()), f"pvcore test {alg}", self.intermediate)
                   for alg, curve in CURVES.items()}
        self.wrong_root = _ca("someone else's root")
        self.untrusted = _leaf(ec.generate_private_key(ec.SECP256R1()), "pvcore test signer", self.wrong_root)
        self.expired = _leaf(ec.generate_private_key(ec.SECP256R1()), "pvcore test signer", self.intermediate,
                             start=NOW - 30 * DAY, end=NOW - DAY)
        self.oem_root = _ca("acme OEM root")
        self.oem = _leaf(ec.generate_private_key(ec.SECP256R1()), OEM_NAME, self.oem_root)
        #: signs without x5c: the device's on-disk pub.pem
        self.disk = Identity(rsa_key, [])

    def install(self, etc_dir: str, truststore: str = "ca-certificates", oem_truststore: str = "ca-oem-certificates"):
        """Write the truststores and pub.pem where the device reads them."""
        trust = os.path.join(etc_dir, "pantavisor", "pvs", "trust")
        os.makedirs(trust, exist_ok=True)
        pem = serialization.Encoding.PEM
        with open(os.path.join(trust, truststore + ".crt"), "wb") as fh:
            fh.write(self.root.cert.public_bytes(pem))
        with open(os.path.join(trust, oem_truststore + ".crt"), "wb") as fh:
            fh.write(self.oem_root.cert.public_bytes(pem))
        with open(os.path.join(trust, "pub.pem"), "wb") as fh:
            fh.write(self.disk.key.public_key().public_bytes(pem, serialization.PublicFormat.SubjectPublicKeyInfo))
        return etc_dir


def _named(globs: Sequence[str], key: str) -> bool:
    # The signer's globs: exact keys and "<folder>/**" (all the tests use).
    for glob in globs:
        folder = glob[:-3] if glob.endswith("/**") else None
        if key == glob or (folder is not None and (key == folder or key.startswith(folder + "/"))):
            return True
    return False


def compact(state: Dict) -> bytes:
    return json.dumps(state, separators=(",", ":")).encode()


def sign(state: Dict, identity: Identity, include: Sequence[str], exclude: Sequence[str] = (),
         alg: Optional[str] = None, x5c: bool = True, der: bool = False) -> Dict:
    """A pvs@2 signature document over ``state``'s keys named by the globs."""
    if alg is None:
        alg = "RS256" if isinstance(identity.key, rsa.RSAPrivateKey) else next(
            a for a, c in CURVES.items() if isinstance(identity.key.curve, c))
    header = {"alg": alg, "pvs": {"include": list(include), "exclude": list(exclude)}, "typ": "PVS"}
    if x5c:
        header["x5c"] = [base64.b64encode(c.public_bytes(serialization.Encoding.DER)).decode() for c in identity.chain]
    protected = b64url(json.dumps(header, separators=(",", ":")).encode())
    covered = {k: v for k, v in state.items() if _named(include, k) and not _named(exclude, k)}
    payload = compact(covered) if covered else b"}"
    signing_input = (protected + "." + b64url(payload)).encode()
    digest = DIGESTS[alg]()
    if isinstance(identity.key, rsa.RSAPrivateKey):
        signature = identity.key.sign(signing_input, padding.PKCS1v15(), digest)
    else:
        signature = identity.key.sign(signing_input, ec.ECDSA(digest))
        if not der:
            r, s = utils.decode_dss_signature(signature)
            size = (identity.key.curve.key_size + 7) // 8
            signature = r.to_bytes(size, "big") + s.to_bytes(size, "big")
    return {"#spec": "pvs@2", "protected": protected, "signature": b64url(signature)}


def with_signature(state: Dict, name: str, doc: Dict) -> Dict:
    """``state`` with ``_sigs/<name>.json`` added, keys sorted as pvr stores them."""
    out = dict(state)
    out[f"_sigs/{name}.json"] = doc
    return dict(sorted(out.items()))


def app_state(kernel: str = "1" * 64, config: str = "2" * 64) -> Dict:
    """A small state: a BSP, a container ``app`` and an OEM configuration file."""
    return dict(sorted({
        "#spec": SPEC,
        "bsp/run.json": {"initrd": "pantavisor", "linux": "kernel.img"},
        "bsp/kernel.img": kernel,
        "app/run.json": {"name": "app", "group": "app"},
        "app/root.squashfs": kernel,
        f"{OEM_NAME}/default.config": config,
    }.items()))
