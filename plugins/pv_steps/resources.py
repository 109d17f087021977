"""``/steps`` and its sub-resources (docs/protocol.md §7.9)."""
from __future__ import annotations

import errno
import os
from typing import Callable, Optional

import falcon
import structlog

from pvcore.body import body_stream, drain, dumps, read_small_body
from pvcore.errors import BadRequest, Conflict, InsufficientStorage, NotFound, PvError, Unprocessable

from pv_steps import listing
from pv_steps.names import LOCALS, valid_local_name
from pv_steps.state import Steps
from pv_steps.validate import check_state, scan_state_file

log = structlog.get_logger(__name__)

NOT_FOUND = "Resource does not exist"
BAD_STEP_NAME = "Request has bas step name"  # sic (docs/protocol.md §12.6)
BAD_FORMAT = "Parser: State JSON has bad format"
SECUREBOOT = "Secureboot: {}"
COMMITMSG_MAX = 256
CHUNK = 1 << 20
_NO_SPACE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def _rev(rev: Optional[str], name: Optional[str]) -> str:
    return rev if name is None else LOCALS + "/" + name


def _send_file(resp, path: Optional[str]) -> None:
    """Stream ``path`` as JSON with a Content-Length (pvtx needs one); 404 if absent."""
    if path is None:
        raise NotFound(NOT_FOUND)
    try:
        fh = open(path, "rb")
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        raise NotFound(NOT_FOUND) from None
    resp.content_type = falcon.MEDIA_JSON
    resp.content_length = os.fstat(fh.fileno()).st_size
    resp.stream = fh


class StepList:
    """``GET /steps``."""

    def __init__(self, steps: Steps):
        self._steps = steps

    def on_get(self, req, resp):
        resp.content_type = falcon.MEDIA_JSON
        resp.data = listing.render(self._steps.trails)


class StepState:
    """``GET /steps/{rev}``: the stored state JSON (``current`` works)."""

    def __init__(self, steps: Steps):
        self._steps = steps

    def on_get(self, req, resp, rev=None, name=None):
        _send_file(resp, self._steps.trails.state_path(_rev(rev, name)))


class LocalStep(StepState):
    """``GET|PUT /steps/locals/{name}``: read or install a local revision.

    A PUT is refused with 409 over the running revision (``Revision is
    running``) and over the committed rollback point (``Revision is the
    rollback point``): replacing either would change what a rollback boots.

    :param verify: the secure boot check of a stored state file: ``None``
        when it may run, else the result upstream reports (docs/protocol.md §D12).
    """

    def __init__(self, steps: Steps, free_space: Callable[[str], int], max_size: int, init_mode: str,
                 verify: Callable[[str], Optional[str]] = lambda path: None):
        super().__init__(steps)
        self._free_space = free_space
        self._max_size = max_size
        self._init_mode = init_mode
        self._verify = verify

    def on_put(self, req, resp, name):
        if not valid_local_name(name):
            raise BadRequest(BAD_STEP_NAME)
        rev = LOCALS + "/" + name
        self._refuse_in_use(rev)
        trails = self._steps.trails
        length = req.content_length
        if length is not None and length > self._max_size:
            raise InsufficientStorage()
        os.makedirs(trails.root, exist_ok=True)
        if length is not None and length > self._free_space(trails.root):
            raise InsufficientStorage()
        tmp = trails.staging_path()
        try:
            size = self._receive(body_stream(req), tmp)
            # The body is checked from the file it was streamed to, never held
            # whole in memory (docs/protocol.md §7.9).
            scanned = scan_state_file(tmp)
            if scanned is not None:
                self._check_signatures(rev, tmp)
            reason = "not a JSON object" if scanned is None else check_state(scanned.state, self._init_mode)
            if reason:
                log.info("state_json_rejected", rev=rev, reason=reason)
                raise Unprocessable(BAD_FORMAT)
            with self._steps.lock:
                self._refuse_in_use(rev)
                trails.install(rev, tmp, scanned.objects)
        finally:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
        log.info("local_revision_installed", rev=rev, size=size)
        resp.content_type = falcon.MEDIA_JSON

    def _check_signatures(self, rev: str, tmp: str) -> None:
        """Upstream's secure boot check, between its JSON and its format checks:
        a refused state is 422 and the revision of that name is removed, as
        upstream removes it (docs/protocol.md §D12.1)."""
        result = self._verify(tmp)
        if result is None:
            return
        with self._steps.lock:
            if rev not in (self._steps.trails.running(), self._steps.boot_state().pv_rev):
                self._steps.trails.remove(rev)
        log.info("state_json_refused_by_secureboot", rev=rev, result=result)
        raise Unprocessable(SECUREBOOT.format(result))

    def _refuse_in_use(self, rev: str) -> None:
        if rev == self._steps.trails.running():
            raise Conflict("Revision is running")
        if rev == self._steps.boot_state().pv_rev:
            raise Conflict("Revision is the rollback point")

    def _receive(self, stream, tmp: str) -> int:
        """Copy the body into ``tmp`` (fsynced), at most ``max_size`` bytes; return its size."""
        size = 0
        try:
            with open(tmp, "xb") as fh:
                while True:
                    chunk = stream.read(CHUNK)
                    if not chunk:
                        break
                    size += len(chunk)
                    if size > self._max_size:
                        raise InsufficientStorage()
                    fh.write(chunk)
                fh.flush()
                os.fsync(fh.fileno())
            return size
        except OSError as exc:
            if exc.errno in _NO_SPACE_ERRNOS:
                raise InsufficientStorage() from None
            raise


class Progress:
    """``GET /steps/{rev}/progress`` and ``/steps/locals/{name}/progress``."""

    def __init__(self, steps: Steps):
        self._steps = steps

    def on_get(self, req, resp, rev=None, name=None):
        trails = self._steps.trails
        held = trails.unsaved_progress(_rev(rev, name))
        if held is not None:  # the disk refused it: what it will say (docs/protocol.md §7.9)
            resp.content_type = falcon.MEDIA_JSON
            resp.data = dumps(held)
            return
        path = trails.existing(_rev(rev, name))
        _send_file(resp, None if path is None else os.path.join(path, ".pv", "progress"))


class CommitMessage:
    """``PUT /steps/{rev}/commitmsg`` and ``/steps/locals/{name}/commitmsg``: raw text, ≤ 256 bytes."""

    def __init__(self, steps: Steps):
        self._steps = steps

    def on_put(self, req, resp, rev=None, name=None):
        message = read_small_body(req, COMMITMSG_MAX, "No commit message")
        try:
            written = self._steps.trails.write_commitmsg(_rev(rev, name), message)
        except OSError as exc:  # the previous message stays (atomic write)
            if exc.errno in _NO_SPACE_ERRNOS:
                raise InsufficientStorage() from None
            raise
        if not written:
            raise NotFound(NOT_FOUND)
        resp.content_type = falcon.MEDIA_JSON


class GarbageCollect:
    """``POST /storage/gc``: prune revisions, then collect unreferenced objects (:func:`collect`)."""

    def __init__(self, collect: Callable[[], int]):
        self._collect = collect

    def on_post(self, req, resp):
        drain(req)
        try:
            reclaimed = self._collect()
        except OSError:
            log.exception("garbage_collect_failed")
            raise PvError("Error running garbage collector", 500) from None
        resp.content_type = falcon.MEDIA_JSON
        # Hand-formatted, with the space after the colon (docs/protocol.md §7.7).
        resp.data = b'{"reclaimed": %d}' % reclaimed
