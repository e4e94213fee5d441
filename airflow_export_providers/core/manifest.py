"""Publish a whole export under a prefix: a manifest written last is the commit point.

``{prefix}/_manifest.json`` says what the prefix holds, as one *part* per landing task: the files the
latest landing of ``(dag_id, task_id, map_index)`` published there (mapped tasks, or two DAGs sharing
a prefix, each have their own part; a task that lands alone has the only one). Consumers read the
manifest, not a listing. A landing goes like this:

1. **open**: read the manifest (ours, or none; any other object at that key is refused, nothing is
   written). If another task instance is publishing this landing's part right now (a *pending* part
   whose lease has not run out) wait until it is done, so that a landing starts from a settled state.
2. **stage** every file of the export where no reader sees it (S3 multipart uploads, Azure
   uncommitted blocks), each verified; a failure aborts everything staged: nothing was published.
3. **claim**: mark the part *pending* with this export's files, and the keys to remove (the part's
   previous files this export does not have, unless another part owns them now). The manifest is
   written only if it is still the version just read (S3 ``If-Match`` / ``If-None-Match``, Azure
   ``etag`` conditions); another part changing meanwhile only means reading again. If the *same*
   part was published by another landing since step 1, this one lost: with exactly the same bytes
   under the same keys it succeeds without writing; otherwise it aborts what it staged and fails.
   A key another part is publishing (or removing) right now is waited for; a key another part
   owns moves to this part. Parts of the same task under map indexes it no longer has (a re-run
   expanded to fewer instances, a task that stopped or started being mapped) are *retired*: dropped
   from the manifest, their files removed with this part's.
4. **publish**: commit each staged file, delete the keys to remove, mark the part *complete*.

A pending part is never read as complete. When a landing dies between 3 and 4, its pending part
names everything it may have written, and the next landing of that part takes it over (a retry of
the same task instance at once, any other after the lease ran out) and removes what is not part of
its own export. Only keys listed in a manifest this package wrote are ever deleted.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Collection
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
DEFAULT_LEASE = 600.0  # seconds a pending part protects a publish in progress (renewed while it runs)
DEFAULT_POLL = 2.0
TASK_IDENTITY = ("dag_id", "task_id", "run_id", "map_index")
MAX_ROUNDS = 50


class LandingConflict(ExportError):
    """Another landing published this landing's part while it ran; nothing of this one was published."""


def _now_iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="seconds")


def _epoch(value: Any) -> float | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value)).timestamp()
    except ValueError:
        return None


def part_id(by: dict[str, Any]) -> str:
    """The part a landing writes: its task (and map index); a landing outside Airflow has the anonymous one."""
    if by.get("dag_id") is None or by.get("task_id") is None:
        return "-"
    index = by.get("map_index")
    return f"{by['dag_id']}/{by['task_id']}" + (f"[{index}]" if index not in (None, -1) else "")


@dataclass
class Part:
    """What one landing task published under the prefix (or is publishing: ``state`` pending)."""

    state: str
    landing_id: str
    by: dict[str, Any]
    files: list[dict[str, Any]]
    garbage: list[str] = field(default_factory=list)
    export: dict[str, Any] = field(default_factory=dict)
    started_at: str | None = None
    committed_at: str | None = None
    lease_until: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"state": self.state, "landing_id": self.landing_id, "by": self.by, "export": self.export,
                "started_at": self.started_at, "committed_at": self.committed_at, "lease_until": self.lease_until,
                "files": self.files, "garbage": self.garbage}

    @classmethod
    def from_dict(cls, doc: Any) -> Part | None:
        if not isinstance(doc, dict) or doc.get("state") not in (PENDING, COMPLETE):
            return None
        files = doc.get("files") or []
        if not isinstance(files, list) or not all(isinstance(f, dict) and isinstance(f.get("key"), str) for f in files):
            return None
        return cls(
            state=doc["state"], landing_id=str(doc.get("landing_id") or ""), by=dict(doc.get("by") or {}), files=files,
            garbage=[g for g in doc.get("garbage") or [] if isinstance(g, str)], export=dict(doc.get("export") or {}),
            started_at=doc.get("started_at"), committed_at=doc.get("committed_at"), lease_until=doc.get("lease_until"),
        )

    @property
    def keys(self) -> set[str]:
        return {f["key"] for f in self.files}

    @property
    def touched(self) -> set[str]:
        """Every key this part may write or remove while it is pending."""
        return self.keys | set(self.garbage)

    def who(self) -> str:
        parts = [f"{k}={self.by.get(k)}" for k in (*TASK_IDENTITY, "try_number") if self.by.get(k) is not None]
        return ", ".join(parts) or "an unnamed landing"


@dataclass
class Manifest:
    """The landing manifest of one prefix as stored (``version`` is the store's ETag, not stored)."""

    parts: dict[str, Part] = field(default_factory=dict)
    version: str | None = None

    def dumps(self) -> bytes:
        doc = {"format": FORMAT, "parts": {pid: p.to_dict() for pid, p in sorted(self.parts.items())}}
        return json.dumps(doc, indent=1, sort_keys=True).encode()

    @classmethod
    def loads(cls, data: bytes, version: str) -> Manifest | None:
        """The manifest in ``data``, or None when it is not one this package wrote."""
        try:
            doc = json.loads(data)
        except ValueError:
            return None
        if not isinstance(doc, dict) or doc.get("format") != FORMAT or not isinstance(doc.get("parts"), dict):
            return None
        parts = {str(pid): Part.from_dict(p) for pid, p in doc["parts"].items()}
        if any(p is None for p in parts.values()):
            return None
        return cls({pid: p for pid, p in parts.items() if p is not None}, version)


def _fingerprint(files: list[dict[str, Any]]) -> list[tuple[str, Any, Any]] | None:
    if any(not f.get("sha256") for f in files):
        return None
    return sorted((f["key"], f.get("size"), f.get("sha256")) for f in files)


class ExportLanding:
    """One landing of one export into one prefix of one destination (see the module docstring).

    :param writer: the destination.
    :param prefix: the prefix the export lands under (the manifest is ``{prefix}/{manifest_name}``).
    :param by: who lands: ``dag_id``, ``task_id``, ``run_id``, ``map_index``, ``try_number``. The
        task (and map index) names the landing's part; a pending part of the same task instance is
        taken over at once (an earlier try died publishing).
    :param export: what lands (vendor, job id), recorded in the manifest.
    :param lease: seconds a pending part keeps other task instances waiting.
    :param live_indexes: the map indexes this task has in this run (``[-1]`` when it is not mapped):
        the task's parts under any other index are retired. None (not known): none is.
    """

    def __init__(self, writer: ObjectWriter, prefix: str | None, *, by: dict[str, Any] | None = None,
                 export: dict[str, Any] | None = None, manifest_name: str = MANIFEST_NAME, lease: float = DEFAULT_LEASE,
                 poll: float = DEFAULT_POLL, clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep, live_indexes: Collection[int] | None = None) -> None:
        self.writer = writer
        self.prefix = (prefix or "").strip("/")
        self.key = object_key(prefix, manifest_name)
        self.uri = writer.uri(self.key)
        self.by = dict(by or {})
        self.part = part_id(self.by)
        self.export = dict(export or {})
        self.lease = float(lease)
        self.poll = float(poll)
        self.clock = clock
        self.sleep = sleep
        self.live_indexes = None if live_indexes is None else {int(i) for i in live_indexes}
        self.landing_id = uuid.uuid4().hex
        self.started = clock()
        self.staged: list[StagedFile] = []
        self.base: Part | None = None  # this landing's part as it was when the landing started
        self._mine: Part | None = None  # the pending part this landing wrote
        # the part this export is published as once ``commit`` returned: this landing's, or the one
        # another landing published with the very same bytes meanwhile (its landing id, not ours)
        self.committed: Part | None = None

    # ---- reading the prefix's state ------------------------------------------------------------
    def read(self) -> Manifest:
        stored = self.writer.read(self.key)
        if stored is None:
            return Manifest()
        manifest = Manifest.loads(stored.data, stored.version)
        if manifest is None:
            raise ExportError(
                f"{self.uri}: an object this package did not write is where the landing manifest goes; refusing to "
                "overwrite it or to land next to it. Move that object, or land into another prefix"
            )
        return manifest

    def _same_task(self, part: Part) -> bool:
        return self.by.get("dag_id") is not None and all(part.by.get(k) == self.by.get(k) for k in TASK_IDENTITY)

    def _alive(self, part: Part) -> bool:
        until = _epoch(part.lease_until)
        return until is not None and self.clock() < until

    def _retired(self, pid: str, part: Part) -> bool:
        """``part`` is this task's under a map index the task no longer has, and nobody is publishing it."""
        if self.live_indexes is None or pid == self.part or self.by.get("dag_id") is None or self._busy(part):
            return False
        if (part.by.get("dag_id"), part.by.get("task_id")) != (self.by.get("dag_id"), self.by.get("task_id")):
            return False
        index = part.by.get("map_index")
        return (-1 if index is None else index) not in self.live_indexes

    def _busy(self, part: Part | None) -> bool:
        """Another task instance is publishing ``part`` right now."""
        return part is not None and part.state == PENDING and not self._same_task(part) and self._alive(part)

    def _wait(self, part: Part, why: str) -> None:
        log.info("%s: %s is publishing %s (lease until %s); waiting for it", self.uri, part.who(), why, part.lease_until)
        until = _epoch(part.lease_until) or self.clock()
        self.sleep(max(min(self.poll, until - self.clock()), 0.05))

    def open(self) -> Part | None:
        """Read (and settle) the state this landing's part starts from; refuse a foreign object at the manifest key."""
        part = self.read().parts.get(self.part)
        while self._busy(part):
            assert part is not None
            self._wait(part, "this landing's part")
            part = self.read().parts.get(self.part)
        self.base = part
        if part is not None and part.state == PENDING:
            log.warning("%s: %s did not finish publishing; this landing takes over and removes what it left", self.uri, part.who())
        return part

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

    def _part(self, state: str, files: list[dict[str, Any]], garbage: list[str]) -> Part:
        now = self.clock()
        return Part(
            state=state, landing_id=self.landing_id, by=self.by, files=files, garbage=garbage, export=self.export,
            started_at=_now_iso(self.started), committed_at=_now_iso(now) if state == COMPLETE else None,
            lease_until=_now_iso(now + self.lease) if state == PENDING else None,
        )

    @staticmethod
    def _same(a: Part | None, b: Part | None) -> bool:
        if a is None or b is None:
            return a is b
        return (a.landing_id, a.state) == (b.landing_id, b.state)

    def _claim(self, files: list[dict[str, Any]]) -> list[LandedObject] | None:
        """Mark this landing's part pending; None when it did.

        Returns the landed objects (without writing) when another landing already published the
        same bytes in this part; raises LandingConflict when it published something else.
        """
        keys = {f["key"] for f in files}
        for _ in range(MAX_ROUNDS):
            manifest = self.read()
            current = manifest.parts.get(self.part)
            if not self._same(current, self.base):
                if self._busy(current):
                    assert current is not None
                    self._wait(current, "this landing's part")
                    continue
                if current is not None and current.state == COMPLETE and _fingerprint(current.files) is not None \
                        and _fingerprint(current.files) == _fingerprint(files):
                    log.info("%s: %s published the same bytes under the same keys meanwhile; nothing to write",
                             self.uri, current.who())
                    self.abort()
                    self.committed = current
                    return [s.landed for s in self.staged]
                if current is not None and current.state == PENDING:  # its owner died publishing: take it over
                    log.warning("%s: %s started publishing after this landing began and did not finish; taking over",
                                self.uri, current.who())
                    self.base = current
                    continue
                self.abort()
                who = current.who() if current is not None else "someone (the part was removed)"
                raise LandingConflict(
                    f"{self.uri}: {who} published this task's export here while this landing ran; the first to publish "
                    "wins, so nothing of this landing was published and its staged uploads were aborted. Run this task "
                    "again to replace that export with a new one"
                )
            retired = {pid: p for pid, p in manifest.parts.items() if self._retired(pid, p)}
            others = {pid: p for pid, p in manifest.parts.items() if pid != self.part and pid not in retired}
            busy = next((p for p in others.values() if self._busy(p) and p.touched & keys), None)
            if busy is not None:  # another part is writing or removing one of our keys: let it finish
                self._wait(busy, "keys this landing writes")
                continue
            owned_elsewhere = set().union(*(p.keys for p in others.values())) if others else set()
            previous = self.base.touched if self.base is not None else set()
            previous |= set().union(*(p.touched for p in retired.values())) if retired else set()
            garbage = sorted(k for k in previous - keys - owned_elsewhere - {self.key} if self._under_prefix(k))
            for pid, old in retired.items():
                log.warning("%s: retiring part %s (%s): this task has no map index %s in this run any more; its %d "
                            "file(s) are removed with this landing's", self.uri, pid, old.who(), old.by.get("map_index"),
                            len(old.files))
                del manifest.parts[pid]
            pending = self._part(PENDING, files, garbage)
            for other in others.values():  # a key this export lands is this part's from now on
                if other.keys & keys:
                    log.warning("%s: %s landed %d of these keys before; they move to this landing", self.uri, other.who(),
                                len(other.keys & keys))
                    other.files = [f for f in other.files if f["key"] not in keys]
            manifest.parts[self.part] = pending
            try:
                manifest.version = self.writer.put(self.key, manifest.dumps(), expect=manifest.version)
            except WriteConflict:
                continue  # someone wrote it a moment ago: read again and decide
            self._mine = pending
            return None
        self.abort()
        raise LandingConflict(f"{self.uri}: the manifest kept changing under this landing; nothing was published")

    def _update(self, part: Part) -> None:
        """Replace this landing's part, if it is still the one this landing wrote (a conditional read-modify-write)."""
        assert self._mine is not None
        for _ in range(MAX_ROUNDS):
            manifest = self.read()
            current = manifest.parts.get(self.part)
            if current is None or current.landing_id != self.landing_id:
                raise LandingConflict(
                    f"{self.uri}: {current.who() if current else 'someone'} took over this task's export here while this "
                    "landing was publishing; this one counts as failed (its files may have been replaced)"
                )
            manifest.parts[self.part] = part
            try:
                self.writer.put(self.key, manifest.dumps(), expect=manifest.version)
            except WriteConflict:
                continue
            self._mine = part
            return
        raise LandingConflict(f"{self.uri}: the manifest kept changing under this landing")

    def _keep_lease(self) -> None:
        """Renew the pending part's lease when half of it is gone, so nobody takes over a live publish."""
        assert self._mine is not None
        until = _epoch(self._mine.lease_until) or 0.0
        if self.clock() < until - self.lease / 2:
            return
        try:
            self._update(self._part(PENDING, self._mine.files, self._mine.garbage))
        except LandingConflict:
            self.abort()
            raise

    def commit(self) -> list[LandedObject]:
        """Publish every staged file and the manifest (see the module docstring); the landed objects in order."""
        files = self._entries()
        same = self._claim(files)
        if same is not None:
            return same
        assert self._mine is not None
        garbage = list(self._mine.garbage)
        landed: list[LandedObject] = []
        try:
            for staged in self.staged:
                self._keep_lease()
                landed.append(staged.commit())
            for key in garbage:
                self._keep_lease()
                self.writer.delete(key)
        except BaseException:
            self.abort()
            raise
        self._update(self._part(COMPLETE, files, []))
        self.committed = self._mine
        log.info("published %d file(s) under %s (manifest %s, part %s)%s", len(landed),
                 self.writer.uri(self.prefix + "/" if self.prefix else ""), self.uri, self.part,
                 f"; removed {len(garbage)} file(s) of the previous export" if garbage else "")
        return landed
