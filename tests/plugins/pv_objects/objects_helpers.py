"""Helpers shared by the objects tests."""
import hashlib
import os


def blob(label: str, size: int = 1000):
    data = (label.encode() * (size // max(1, len(label)) + 1))[:size]
    return data, hashlib.sha256(data).hexdigest()


def objects_dir(server_or_core) -> str:
    storage = getattr(server_or_core, "storage_dir", None) or server_or_core.settings.storage_dir
    return os.path.join(storage, "objects")
