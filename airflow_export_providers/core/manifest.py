"""Publish a whole export under one prefix: a manifest written last is the commit point.

One prefix holds one export. Its manifest, ``{prefix}/_manifest.json``, lists the files of the export
that is there; consumers (and Assets) read the manifest, not a listing. A landing goes like this:

1. **open**: read the manifest (ours, or none; any other object at that key is refused, nothing is
   written). If another task's landing is publishing right now (a *pending* manifest whose lease has
   not run out) wait until it is done, so that a landing always starts from a settled state.
2. **stage** every file of the export where no reader sees it (S3 multipart uploads, Azure
   uncommitted blocks), each verified; a failure aborts everything staged: nothing was published.
3. **claim**: write a *pending* manifest (this export's files, and the keys to remove: the files of
   the previous manifest this export does not have) — only if the manifest is still the one read in
   step 1 (a conditional write: S3 ``If-Match`` / ``If-None-Match``, Azure ``etag`` conditions). If
   another landing got there first, this one lost: when it staged exactly the same bytes under the
   same keys it succeeds without writing anything; otherwise it aborts what it staged and fails.
4. **publish**: commit each staged file, delete the keys to remove, write the *complete* manifest
   (again conditional on the pending one this landing wrote).

A pending manifest is never read as complete. When a landing dies between 3 and 4 its pending
manifest names everything it may have written, and the next landing of the prefix takes it over
(a retry of the same task instance at once, any other after the lease ran out) and removes what is
not part of its own export. Only keys listed in a manifest this package wrote are ever deleted.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from airflow_export_providers.core.errors import ExportError
from airflow_export_providers.core.landing import LandedObject, ObjectWriter, StagedFile, WriteConflict, object_key

log = logging.getLogger(__name__)

MANIFEST_NAME = "_manifest.json"
FORMAT = "airflow-export-providers/landing-manifest/1"
PENDING = "pending"
COMPLETE = "complete"
DEFAULT_LEASE = 600.0  # seconds a pending manifest protects a publish in progress (renewed while it runs)
DEFAULT_POLL = 2.0
TASK_IDENTITY = ("dag_id", "task_id", "run_id", "map_index")


class LandingConflict(ExportError):
    """Another landing published this prefix while this one ran; nothing of this one was published."""


def _now_iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="seconds")


def _epoch(value: Any) -> float | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value)).timestamp()
    except ValueError:
        return None


@dataclass
class Manifest:
    """The landing manifest of one prefix, as stored (``version`` is the store's ETag, not stored)."""

    state: str
    landing_id: str
    by: dict[str, Any]
    files: list[dict[str, Any]]
    garbage: list[str] = field(default_factory=list)
    export: dict[str, Any] = field(default_factory=dict)
    started_at: str | None = None
    committed_at: str | None = None
    lease_until: str | None = None
    version: str | None = None

    def dumps(self) -> bytes:
        doc = {
            "format": FORMAT, "state": self.state, "landing_id": self.landing_id, "by": self.by,
            "export": self.export, "started_at": self.started_at, "committed_at": self.committed_at,
            "lease_until": self.lease_until, "files": self.files, "garbage": self.garbage,
        }
        return json.dumps(doc, indent=1, sort_keys=True).encode()

    @classmethod
    def loads(cls, data: bytes, version: str) -> Manifest | None:
        """The manifest in ``data``, or None when it is not one this package wrote."""
        try:
            doc = json.loads(data)
        except ValueError:
            return None
        if not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("state") not in (PENDING, COMPLETE):
            return None
        files = doc.get("files") or []
        garbage = doc.get("garbage") or []
        if not isinstance(files, list) or not all(isinstance(f, dict) and isinstance(f.get("key"), str) for f in files):
            return None
        return cls(
            state=doc["state"], landing_id=str(doc.get("landing_id") or ""), by=dict(doc.get("by") or {}), files=files,
            garbage=[g for g in garbage if isinstance(g, str)], export=dict(doc.get("export") or {}),
            started_at=doc.get("started_at"), committed_at=doc.get("committed_at"), lease_until=doc.get("lease_until"),
            version=version,
        )

    @property
    def keys(self) -> set[str]:
        return {f["key"] for f in self.files}

    def who(self) -> str:
        parts = [f"{k}={self.by.get(k)}" for k in (*TASK_IDENTITY, "try_number") if self.by.get(k) is not None]
        return ", ".join(parts) or "an unnamed landing"


def _version(manifest: Manifest | None) -> str | None:
    return manifest.version if manifest is not None else None


def _fingerprint(files: list[dict[str, Any]]) -> list[tuple[str, Any, Any]] | None:
    if any(not f.get("sha256") for f in files):
        return None
    return sorted((f["key"], f.get("size"), f.get("sha256")) for f in files)


class ExportLanding:
    """One landing of one export into one prefix of one destination (see the module docstring).

    :param writer: the destination.
    :param prefix: the prefix the export lands under (the manifest is ``{prefix}/{manifest_name}``).
    :param by: who lands: ``dag_id``, ``task_id``, ``run_id``, ``map_index``, ``try_number``; a pending
        manifest of the same task instance is taken over at once (an earlier try died publishing).
    :param export: what lands (vendor, job id), recorded in the manifest.
    :param lease: seconds a pending manifest keeps other task instances waiting.
    """

    def __init__(self, writer: ObjectWriter, prefix: str | None, *, by: dict[str, Any] | None = None,
                 export: dict[str, Any] | None = None, manifest_name: str = MANIFEST_NAME, lease: float = DEFAULT_LEASE,
                 poll: float = DEFAULT_POLL, clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.writer = writer
        self.prefix = (prefix or "").strip("/")
        self.key = object_key(prefix, manifest_name)
        self.uri = writer.uri(self.key)
        self.by = dict(by or {})
        self.export = dict(export or {})
        self.lease = float(lease)
        self.poll = float(poll)
        self.clock = clock
        self.sleep = sleep
        self.landing_id = uuid.uuid4().hex
        self.started = clock()
        self.staged: list[StagedFile] = []
        self.base: Manifest | None = None
        self._version: str | None = None
        self._pending: Manifest | None = None

    # ---- reading the prefix's state ------------------------------------------------------------
    def read(self) -> Manifest | None:
        stored = self.writer.read(self.key)
        if stored is None:
            return None
        manifest = Manifest.loads(stored.data, stored.version)
        if manifest is None:
            raise ExportError(
                f"{self.uri}: an object this package did not write is where the landing manifest goes; refusing to "
                "overwrite it or to land next to it. Move that object, or land into another prefix"
            )
        return manifest

    def _same_task(self, manifest: Manifest) -> bool:
        return all(manifest.by.get(k) == self.by.get(k) for k in TASK_IDENTITY) and self.by.get("dag_id") is not None

    def _alive(self, manifest: Manifest) -> bool:
        until = _epoch(manifest.lease_until)
        return until is not None and self.clock() < until

    def _settle(self, manifest: Manifest | None) -> Manifest | None:
        """Wait while another task instance is publishing this prefix (bounded by its lease)."""
        told = False
        while manifest is not None and manifest.state == PENDING and not self._same_task(manifest) and self._alive(manifest):
            if not told:
                log.info("%s: %s is publishing this prefix (lease until %s); waiting for it", self.uri, manifest.who(),
                         manifest.lease_until)
                told = True
            until = _epoch(manifest.lease_until) or self.clock()
            self.sleep(max(min(self.poll, until - self.clock()), 0.05))
            manifest = self.read()
        return manifest

    def open(self) -> Manifest | None:
        """Read (and settle) the state this landing starts from; refuse a foreign object at the manifest key."""
        self.base = self._settle(self.read())
        if self.base is not None and self.base.state == PENDING:
            log.warning("%s: %s did not finish publishing; this landing takes over and removes what it left",
                        self.uri, self.base.who())
        elif self.base is not None and self.base.by.get("dag_id") is not None and not self._same_task_ids(self.base):
            log.warning("%s: the export here was landed by %s; this landing replaces it", self.uri, self.base.who())
        return self.base

    def _same_task_ids(self, manifest: Manifest) -> bool:
        return all(manifest.by.get(k) == self.by.get(k) for k in ("dag_id", "task_id"))

    # ---- staging -------------------------------------------------------------------------------
    def add(self, staged: StagedFile) -> None:
        self.staged.append(staged)

    def abort(self) -> None:
        """Discard everything staged and not yet published (idempotent)."""
        for staged in self.staged:
            try:
                staged.abort()
            except Exception as exc:  # one failed abort must not keep the others staged
                log.warning("could not abort the upload of %s: %s", staged.landed.uri, exc)

    # ---- publishing ----------------------------------------------------------------------------
    def _entries(self) -> list[dict[str, Any]]:
        return [
            {"key": o.key, "file": o.file, "size": o.size, "rows": o.rows, "sha256": o.sha256, "resource": o.resource}
            for o in (s.landed for s in self.staged)
        ]

    def _under_prefix(self, key: str) -> bool:
        return not self.prefix or key.startswith(self.prefix + "/")

    def _manifest(self, state: str, files: list[dict[str, Any]], garbage: list[str]) -> Manifest:
        now = self.clock()
        return Manifest(
            state=state, landing_id=self.landing_id, by=self.by, files=files, garbage=garbage, export=self.export,
            started_at=_now_iso(self.started), committed_at=_now_iso(now) if state == COMPLETE else None,
            lease_until=_now_iso(now + self.lease) if state == PENDING else None,
        )

    def _claim(self, files: list[dict[str, Any]]) -> list[LandedObject] | None:
        """Write the pending manifest over the one this landing started from; None when it did.

        Returns the landed objects (without writing) when another landing already published the
        same bytes; raises LandingConflict when it published something else.
        """
        keys = {f["key"] for f in files}
        for _ in range(20):
            current = self.read()
            if _version(current) != _version(self.base):
                current = self._settle(current)
                if current is not None and current.state == COMPLETE and _fingerprint(current.files) is not None \
                        and _fingerprint(current.files) == _fingerprint(files):
                    log.info("%s: %s published the same bytes under the same keys meanwhile; nothing to write",
                             self.uri, current.who())
                    self.abort()
                    return [s.landed for s in self.staged]
                if current is not None and current.state == PENDING:  # its owner died publishing: take it over
                    log.warning("%s: %s started publishing after this landing began and did not finish; taking over",
                                self.uri, current.who())
                    self.base = current
                    continue
                self.abort()
                who = current.who() if current is not None else "someone (the manifest was removed)"
                raise LandingConflict(
                    f"{self.uri}: {who} published this prefix while this landing ran; the first to publish wins, so "
                    "nothing of this landing was published and its staged uploads were aborted. Run this task again "
                    "to replace that export with a new one"
                )
            previous: set[str] = set()
            if self.base is not None:
                previous = self.base.keys | set(self.base.garbage)
            garbage = sorted(k for k in previous - keys - {self.key} if self._under_prefix(k))
            pending = self._manifest(PENDING, files, garbage)
            try:
                self._version = self.writer.put(self.key, pending.dumps(), expect=_version(self.base))
            except WriteConflict:
                continue  # someone wrote it a moment ago: read again and decide
            self._pending = pending
            return None
        self.abort()
        raise LandingConflict(f"{self.uri}: the manifest kept changing under this landing; nothing was published")

    def _keep_lease(self) -> None:
        """Renew the pending manifest's lease when half of it is gone, so nobody takes over a live publish."""
        assert self._pending is not None
        until = _epoch(self._pending.lease_until) or 0.0
        if self.clock() < until - self.lease / 2:
            return
        renewed = self._manifest(PENDING, self._pending.files, self._pending.garbage)
        try:
            self._version = self.writer.put(self.key, renewed.dumps(), expect=self._version)
        except WriteConflict:
            self.abort()
            raise LandingConflict(f"{self.uri}: another landing took over this prefix while this one was publishing") from None
        self._pending = renewed

    def commit(self) -> list[LandedObject]:
        """Publish every staged file and the manifest (see the module docstring); the landed objects in order."""
        files = self._entries()
        same = self._claim(files)
        if same is not None:
            return same
        assert self._pending is not None
        landed: list[LandedObject] = []
        try:
            for staged in self.staged:
                self._keep_lease()
                landed.append(staged.commit())
            for key in self._pending.garbage:
                self._keep_lease()
                self.writer.delete(key)
        except BaseException:
            self.abort()
            raise
        complete = self._manifest(COMPLETE, files, [])
        try:
            self._version = self.writer.put(self.key, complete.dumps(), expect=self._version)
        except WriteConflict:
            raise LandingConflict(
                f"{self.uri}: another landing took over this prefix before this one wrote its manifest; this one "
                "counts as failed (its files may have been replaced)"
            ) from None
        removed = len(self._pending.garbage)
        log.info("published %d file(s) under %s (manifest %s)%s", len(landed), self.writer.uri(self.prefix + "/" if self.prefix else ""),
                 self.uri, f"; removed {removed} file(s) of the previous export" if removed else "")
        return landed
