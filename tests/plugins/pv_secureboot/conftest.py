"""Fixtures for the secure boot tests: one throwaway PKI per session (key generation is the slow part)."""
import pytest

from secureboot_helpers import PKI


@pytest.fixture(scope="session")
def pki():
    return PKI()


@pytest.fixture(scope="session")
def etc_dir(pki, tmp_path_factory):
    """A ``PV_SYSTEM_ETCDIR`` holding the PKI's truststores and pub.pem."""
    return pki.install(str(tmp_path_factory.mktemp("etc")))
