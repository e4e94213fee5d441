"""Sandbox of the MX Snapshots API: snapshots that become ready after a while, real gzip'd Avro files.

Routes (the project's default path templates, see docs/mx.md):
  GET  /snapshots                         listing root (auth check; used by test_connection)
  GET  /snapshots/{guid}/files            the file listing: no files while generating, 410 once purged,
                                          404 for a GUID MX never handed out
  GET  /snapshots/{guid}/files/{name}     one gzip'd Avro file (Range supported), 410 once purged
  POST /_sandbox/mx/snapshots             create a snapshot with options (JSON body, see ``add_snapshot``)

MX hands out a GUID only once the snapshot exists (seeds/mx-snapshots.txt), so an unknown GUID is a
404, never "wait". The snapshots that exist are those created with ``add_snapshot`` (or the admin
route) and the GUIDs listed in ``state.config["mx"]["snapshots"]`` (default: the seed's example
``CSS-1234``), created at start-up. Each starts its clock with the defaults from
``state.config["mx"]``: ``ready_after`` seconds (default 1.0) listing no files yet, ``purge_after``
seconds after that until it answers 410 (default never). The listing's wrapper is not public
either: ``wrapper`` (per snapshot or in the config) is the key of the list of files (default
``files``) or ``bare`` for a bare JSON list. Auth: ``MD-API-KEY: <key>`` or ``Authorization: Basic
base64(client_id:key)``; anything else is 401. ``Accept`` must name the MX logs media types (406).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import random
import re
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import fastavro
from aiohttp import web

from airflow_export_providers.sandbox.server import SandboxState, serve_bytes

VENDOR = "mx"
CLIENT_ID = "sandbox-mx-client"
ACCEPT_JSON = "application/vnd.mx.logs.v1+json"
ACCEPT_AVRO = "application/vnd.mx.logs.v1+avro"

# Files per resource by default: the last notification_profiles file is header-only (zero records),
# the last transactions file is written with a newer schema (one extra field).
DEFAULT_LAYOUT: dict[str, list[int]] = {
    "users": [12],
    "members": [15],
    "accounts": [14, 9],
    "transactions": [60, 45, 30],
    "devices": [8],
    "goals": [6],
    "notification_profiles": [7, 0],
}
EVOLVED = ("transactions", -1)  # (resource, file index) written with an extra field
EVOLVED_FIELD_NAME = "extended_transaction_type"
EVOLVED_FIELD: dict[str, Any] = {"name": EVOLVED_FIELD_NAME, "type": ["null", "string"], "default": None}

_S = ["null", "string"]
_D = ["null", "double"]
_B = ["null", "boolean"]
_L = ["null", "long"]


def _schema(name: str, fields: list[tuple[str, Any]]) -> dict[str, Any]:
    return {
        "type": "record",
        "name": name,
        "namespace": "com.mx.logs.v1",
        "fields": [{"name": n, "type": t, **({"default": None} if isinstance(t, list) else {})} for n, t in fields],
    }


SCHEMAS: dict[str, dict[str, Any]] = {
    "users": _schema("User", [
        ("guid", "string"), ("id", _S), ("client_guid", "string"), ("email", _S), ("first_name", _S),
        ("last_name", _S), ("is_disabled", "boolean"), ("metadata", _S), ("logged_in_at", _S),
        ("created_at", "string"), ("updated_at", "string"),
    ]),
    "members": _schema("Member", [
        ("guid", "string"), ("user_guid", "string"), ("id", _S), ("institution_code", "string"), ("name", "string"),
        ("connection_status", "string"), ("is_being_aggregated", "boolean"), ("is_oauth", "boolean"),
        ("aggregated_at", _S), ("successfully_aggregated_at", _S), ("metadata", _S),
        ("created_at", "string"), ("updated_at", "string"),
    ]),
    "accounts": _schema("Account", [
        ("guid", "string"), ("user_guid", "string"), ("member_guid", "string"), ("id", _S), ("institution_code", "string"),
        ("name", "string"), ("type", "string"), ("subtype", _S), ("account_number", _S), ("balance", _D),
        ("available_balance", _D), ("credit_limit", _D), ("apr", _D), ("currency_code", "string"),
        ("is_closed", "boolean"), ("is_hidden", "boolean"), ("created_at", "string"), ("updated_at", "string"),
    ]),
    "transactions": _schema("Transaction", [
        ("guid", "string"), ("account_guid", "string"), ("user_guid", "string"), ("member_guid", "string"),
        ("id", _S), ("amount", "double"), ("currency_code", "string"), ("date", "string"), ("posted_at", _S),
        ("transacted_at", _S), ("description", "string"), ("original_description", _S), ("category", _S),
        ("top_level_category", _S), ("merchant_guid", _S), ("status", "string"), ("type", "string"),
        ("is_bill_pay", "boolean"), ("is_direct_deposit", "boolean"), ("is_expense", "boolean"), ("is_fee", "boolean"),
        ("is_income", "boolean"), ("is_international", _B), ("latitude", _D), ("longitude", _D), ("memo", _S),
        ("check_number_string", _S), ("created_at", "string"), ("updated_at", "string"),
    ]),
    "devices": _schema("Device", [
        ("guid", "string"), ("user_guid", "string"), ("device_type", "string"), ("os_version", _S),
        ("app_version", _S), ("model", _S), ("last_seen_at", _S), ("created_at", "string"), ("updated_at", "string"),
    ]),
    "goals": _schema("Goal", [
        ("guid", "string"), ("user_guid", "string"), ("account_guid", _S), ("name", "string"), ("amount", "double"),
        ("current_amount", _D), ("goal_type", "string"), ("track_type", _S), ("position", _L), ("is_complete", "boolean"),
        ("targeted_to_complete_at", _S), ("completed_at", _S), ("created_at", "string"), ("updated_at", "string"),
    ]),
    "notification_profiles": _schema("NotificationProfile", [
        ("guid", "string"), ("user_guid", "string"), ("notification_type", "string"), ("channel", "string"),
        ("is_enabled", "boolean"), ("threshold_amount", _D), ("created_at", "string"), ("updated_at", "string"),
    ]),
}

_CATEGORIES = [("Groceries", "Food & Dining"), ("Restaurants", "Food & Dining"), ("Gas", "Auto & Transport"),
               ("Paycheck", "Income"), ("Mortgage & Rent", "Home"), ("Utilities", "Bills & Utilities"),
               ("Coffee Shops", "Food & Dining"), ("Shopping", "Shopping")]
_MERCHANTS = ["WHOLE FOODS #123", "SHELL OIL 5732", "ACME PAYROLL", "STARBUCKS 0042", "AMAZON MKTPLACE", "CITY UTILITIES"]
_ACCOUNT_TYPES = [("CHECKING", None), ("SAVINGS", None), ("CREDIT_CARD", None), ("LOAN", "MORTGAGE"), ("INVESTMENT", "IRA")]
_FIRST = ["Ana", "Ben", "Chloe", "Dev", "Eli", "Fay", "Gus", "Hana", "Ivo", "Jin"]
_LAST = ["Garcia", "Smith", "Nguyen", "Okafor", "Rossi", "Kim", "Silva"]


def _guid(prefix: str, rng: random.Random) -> str:
    return f"{prefix}-{uuid.UUID(int=rng.getrandbits(128))}"


def _ts(rng: random.Random, base: datetime, days: int = 400) -> str:
    return (base - timedelta(seconds=rng.randrange(days * 86400))).strftime("%Y-%m-%dT%H:%M:%SZ")


class _Generator:
    """Deterministic, referentially consistent MX records for one snapshot."""

    def __init__(self, guid: str, counts: dict[str, int]) -> None:
        self.rng = random.Random(guid)
        self.now = datetime(2026, 11, 1, tzinfo=timezone.utc)
        self.users = [_guid("USR", self.rng) for _ in range(max(1, counts.get("users", 1)))]
        self.members = [(_guid("MBR", self.rng), self.rng.choice(self.users)) for _ in range(max(1, counts.get("members", 1)))]
        self.accounts = [(_guid("ACT", self.rng), *self.rng.choice(self.members)) for _ in range(max(1, counts.get("accounts", 1)))]

    def records(self, resource: str, n: int, start: int) -> list[dict[str, Any]]:
        return [getattr(self, f"_{resource}")(start + i) for i in range(n)]

    def _times(self) -> tuple[str, str]:
        created = _ts(self.rng, self.now)
        return created, max(created, _ts(self.rng, self.now, 30))

    def _users(self, i: int) -> dict[str, Any]:
        r = self.rng
        created, updated = self._times()
        first, last = r.choice(_FIRST), r.choice(_LAST)
        return {
            "guid": self.users[i % len(self.users)], "id": f"partner-user-{i}", "client_guid": "CLT-sandbox",
            "email": f"{first.lower()}.{last.lower()}{i}@example.com" if r.random() > 0.2 else None,
            "first_name": first, "last_name": last, "is_disabled": r.random() < 0.1,
            "metadata": '{"segment": "retail"}' if r.random() < 0.3 else None,
            "logged_in_at": _ts(r, self.now, 60) if r.random() > 0.3 else None, "created_at": created, "updated_at": updated,
        }

    def _members(self, i: int) -> dict[str, Any]:
        r = self.rng
        guid, user = self.members[i % len(self.members)]
        created, updated = self._times()
        status = r.choice(["CONNECTED", "CONNECTED", "CONNECTED", "CHALLENGED", "DENIED", "EXPIRED"])
        return {
            "guid": guid, "user_guid": user, "id": None, "institution_code": r.choice(["chase", "wells_fargo", "mxbank", "ally"]),
            "name": r.choice(["Chase", "Wells Fargo", "MX Bank", "Ally"]), "connection_status": status,
            "is_being_aggregated": r.random() < 0.1, "is_oauth": r.random() < 0.5,
            "aggregated_at": updated, "successfully_aggregated_at": updated if status == "CONNECTED" else None,
            "metadata": None, "created_at": created, "updated_at": updated,
        }

    def _accounts(self, i: int) -> dict[str, Any]:
        r = self.rng
        guid, member, user = self.accounts[i % len(self.accounts)]
        created, updated = self._times()
        kind, subtype = r.choice(_ACCOUNT_TYPES)
        balance = round(r.uniform(-2000, 25000), 2)
        return {
            "guid": guid, "user_guid": user, "member_guid": member, "id": f"acct-{i}", "institution_code": "mxbank",
            "name": f"{kind.title().replace('_', ' ')} {r.randrange(1000, 9999)}", "type": kind, "subtype": subtype,
            "account_number": f"XXXXXX{r.randrange(1000, 9999)}", "balance": balance,
            "available_balance": round(balance * 0.95, 2) if kind != "LOAN" else None,
            "credit_limit": 5000.0 if kind == "CREDIT_CARD" else None, "apr": 19.99 if kind == "CREDIT_CARD" else None,
            "currency_code": "USD", "is_closed": r.random() < 0.05, "is_hidden": False, "created_at": created, "updated_at": updated,
        }

    def _transactions(self, i: int) -> dict[str, Any]:
        r = self.rng
        account, member, user = r.choice(self.accounts)
        category, top = r.choice(_CATEGORIES)
        income = top == "Income"
        amount = round(r.uniform(1500, 4000) if income else r.uniform(1, 300), 2)
        transacted = _ts(r, self.now, 180)
        status = "PENDING" if r.random() < 0.08 else "POSTED"
        return {
            "guid": _guid("TRN", r), "account_guid": account, "user_guid": user, "member_guid": member, "id": f"txn-{i}",
            "amount": amount, "currency_code": "USD", "date": transacted[:10],
            "posted_at": transacted if status == "POSTED" else None, "transacted_at": transacted,
            "description": category if r.random() < 0.5 else r.choice(_MERCHANTS).title(), "original_description": r.choice(_MERCHANTS),
            "category": category, "top_level_category": top, "merchant_guid": _guid("MCH", r) if r.random() < 0.7 else None,
            "status": status, "type": "CREDIT" if income else "DEBIT", "is_bill_pay": top == "Bills & Utilities",
            "is_direct_deposit": income, "is_expense": not income, "is_fee": False, "is_income": income,
            "is_international": r.random() < 0.02 if r.random() < 0.9 else None,
            "latitude": round(r.uniform(25, 48), 6) if r.random() < 0.3 else None,
            "longitude": round(r.uniform(-122, -71), 6) if r.random() < 0.3 else None,
            "memo": None, "check_number_string": None, "created_at": transacted, "updated_at": transacted,
        }

    def _devices(self, i: int) -> dict[str, Any]:
        r = self.rng
        created, updated = self._times()
        kind = r.choice(["IOS", "ANDROID"])
        return {
            "guid": _guid("DEV", r), "user_guid": r.choice(self.users), "device_type": kind,
            "os_version": r.choice(["17.4", "18.1"]) if kind == "IOS" else r.choice(["13", "14"]),
            "app_version": f"7.{r.randrange(0, 9)}.{r.randrange(0, 20)}", "model": None if r.random() < 0.3 else ("iPhone" if kind == "IOS" else "Pixel 8"),
            "last_seen_at": updated, "created_at": created, "updated_at": updated,
        }

    def _goals(self, i: int) -> dict[str, Any]:
        r = self.rng
        created, updated = self._times()
        amount = float(r.choice([1000, 2500, 5000, 12000]))
        current = round(r.uniform(0, amount), 2)
        return {
            "guid": _guid("GOL", r), "user_guid": r.choice(self.users), "account_guid": r.choice(self.accounts)[0] if r.random() < 0.8 else None,
            "name": r.choice(["Emergency fund", "Vacation", "New car", "Pay off card"]), "amount": amount, "current_amount": current,
            "goal_type": r.choice(["SAVE", "PAYOFF"]), "track_type": r.choice(["ACCOUNT", "MANUAL"]), "position": i + 1,
            "is_complete": current >= amount, "targeted_to_complete_at": _ts(r, self.now - timedelta(days=-365), 365),
            "completed_at": None, "created_at": created, "updated_at": updated,
        }

    def _notification_profiles(self, i: int) -> dict[str, Any]:
        r = self.rng
        created, updated = self._times()
        kind = r.choice(["LOW_BALANCE", "LARGE_PURCHASE", "BUDGET_EXCEEDED", "DEPOSIT"])
        return {
            "guid": _guid("NPF", r), "user_guid": r.choice(self.users), "notification_type": kind,
            "channel": r.choice(["EMAIL", "PUSH", "SMS"]), "is_enabled": r.random() > 0.2,
            "threshold_amount": float(r.choice([50, 100, 500])) if kind in ("LOW_BALANCE", "LARGE_PURCHASE") else None,
            "created_at": created, "updated_at": updated,
        }


def avro_gzip(schema: dict[str, Any], records: list[dict[str, Any]]) -> bytes:
    """A real Avro object container file (writer schema in its header), gzip'd as MX serves it."""
    buf = io.BytesIO()
    fastavro.writer(buf, fastavro.parse_schema(schema), records)
    return gzip.compress(buf.getvalue(), mtime=0)


@dataclass
class SnapshotFile:
    guid: str
    name: str
    resource: str
    records: list[dict[str, Any]]
    data: bytes
    schema: dict[str, Any]

    @property
    def md5(self) -> str:
        return hashlib.md5(self.data).hexdigest()


@dataclass
class Snapshot:
    guid: str
    created: float = field(default_factory=time.time)
    ready_after: float = 1.0
    purge_after: float | None = None  # seconds after ready; None = never (in this run)
    purged: bool = False
    generated_at: str | None = None  # overrides the generation time the listing reports
    layout: dict[str, list[int]] = field(default_factory=lambda: {k: list(v) for k, v in DEFAULT_LAYOUT.items()})
    wrapper: str = "files"  # the listing's key of the file entries, or "bare" (a bare JSON list)
    url_style: str = "absolute"  # absolute | relative | none (names only) | signed | other_origin
    bad_checksum: str | None = None  # a file name whose listed checksum is wrong
    per_page: int | None = None  # page the listing (?page=N, pagination object) like MX's list endpoints
    clock_on_first_request: bool = False  # start the ready_after clock when the listing is first read
    files: list[SnapshotFile] = field(default_factory=list)

    def state(self, now: float | None = None) -> str:
        elapsed = (now or time.time()) - self.created
        if self.purged or (self.purge_after is not None and elapsed >= self.ready_after + self.purge_after):
            return "purged"
        return "ready" if elapsed >= self.ready_after else "generating"

    def build(self) -> None:
        if self.files:
            return
        counts = {r: sum(n) for r, n in self.layout.items()}
        gen = _Generator(self.guid, counts)
        rng = random.Random(self.guid + "/files")
        for resource in SCHEMAS:
            sizes = self.layout.get(resource, [])
            offset = 0
            for index, n in enumerate(sizes):
                schema = SCHEMAS[resource]
                records = gen.records(resource, n, offset)
                offset += n
                if resource == EVOLVED[0] and index == len(sizes) + EVOLVED[1] and len(sizes) > 1:
                    schema = {**schema, "fields": [*schema["fields"], EVOLVED_FIELD]}
                    for rec in records:
                        rec[EVOLVED_FIELD_NAME] = rng.choice(["ATM_WITHDRAWAL", "PURCHASE", "TRANSFER", None])
                name = f"{self.guid}_{resource}_{index + 1:04d}.avro.gz"
                self.files.append(SnapshotFile(_guid("SNF", rng), name, resource, records, avro_gzip(schema, records), schema))

    def generated(self) -> str:
        if self.generated_at:
            return self.generated_at
        return datetime.fromtimestamp(self.created + self.ready_after, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _mx(state: SandboxState) -> dict[str, Any]:
    return state.vendor.setdefault(VENDOR, {"snapshots": {}})


def add_snapshot(state: SandboxState, guid: str, **options: Any) -> Snapshot:
    """Create (or replace) a snapshot; options are the ``Snapshot`` fields (``ready_after``, ``purged``, ...)."""
    cfg = state.config.get(VENDOR, {})
    defaults = {k: cfg[k] for k in ("ready_after", "purge_after", "url_style", "wrapper") if k in cfg}
    snap = Snapshot(guid=guid, **{**defaults, **options})
    snap.build()
    with state.lock:
        _mx(state)["snapshots"][guid] = snap
    return snap


def find_snapshot(state: SandboxState, guid: str) -> Snapshot | None:
    """The snapshot MX generated under ``guid``, or None: MX never handed that GUID out."""
    with state.lock:
        snap: Snapshot | None = _mx(state)["snapshots"].get(guid)
    return snap


def get_snapshot(state: SandboxState, guid: str) -> Snapshot:
    snap = find_snapshot(state, guid)
    if snap is None:
        raise KeyError(f"no MX snapshot {guid!r} in the sandbox (create it with add_snapshot)")
    return snap


def _authorized(request: web.Request, state: SandboxState) -> bool:
    key = state.secret("mx-api-key")
    styles = state.config.get(VENDOR, {}).get("auth_styles", ("md-api-key", "basic"))
    if "md-api-key" in styles and request.headers.get("MD-API-KEY") == key:
        return True
    expected = "Basic " + base64.b64encode(f"{CLIENT_ID}:{key}".encode()).decode()
    return "basic" in styles and request.headers.get("Authorization") == expected


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": {"message": message, "status": status}}, status=status)


def _check(request: web.Request, accept: str) -> web.Response | None:
    state: SandboxState = request.app["state"]
    if not _authorized(request, state):
        return _error(401, "Unauthorized: missing or invalid MD-API-KEY / Authorization")
    if accept not in request.headers.get("Accept", ""):
        return _error(406, f"Not Acceptable: this endpoint serves {accept}")
    return None


_GUID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


def _snapshot_for(request: web.Request) -> Snapshot | web.Response:
    state: SandboxState = request.app["state"]
    guid = request.match_info["guid"]
    snap = find_snapshot(state, guid) if _GUID_RE.match(guid) else None
    if snap is None:
        return _error(404, "Not Found")
    if snap.clock_on_first_request:
        snap.clock_on_first_request, snap.created = False, time.time()
    if snap.state() == "purged":
        return _error(410, f"Gone: snapshot {guid} was purged 30 days after generation")
    return snap


async def _root(request: web.Request) -> web.Response:
    refused = _check(request, ACCEPT_JSON)
    if refused is not None:
        return refused
    state: SandboxState = request.app["state"]
    with state.lock:
        snaps = list(_mx(state)["snapshots"].values())
    return web.json_response({"snapshots": [{"guid": s.guid, "status": s.state()} for s in snaps]})


async def _listing(request: web.Request) -> web.Response:
    refused = _check(request, ACCEPT_JSON)
    if refused is not None:
        return refused
    snap = _snapshot_for(request)
    if isinstance(snap, web.Response):
        return snap
    if snap.state() != "ready":
        return _wrapped(snap, {"snapshot": {"guid": snap.guid, "status": "GENERATING"}}, [])
    state: SandboxState = request.app["state"]
    origin = f"{request.scheme}://{request.host}"
    if snap.url_style == "other_origin":
        origin = origin.replace("127.0.0.1", "localhost")
    entries = []
    for f in snap.files:
        path = f"/snapshots/{snap.guid}/files/{f.name}"
        entry: dict[str, Any] = {
            "checksum": ("0" * 32) if f.name == snap.bad_checksum else f.md5,
            "file_size": len(f.data), "guid": f.guid, "name": f.name,
            "number_of_records": len(f.records), "resource_type": f.resource,
        }
        if snap.url_style in ("absolute", "other_origin"):
            entry["url"] = origin + path
        elif snap.url_style == "relative":
            entry["url"] = path
        elif snap.url_style == "signed":
            entry["url"] = f"{origin}{path}?token={state.secret('mx-link-token')}"
        entries.append(entry)
    answer: dict[str, Any] = {"snapshot": {"guid": snap.guid, "status": "READY", "generated_at": snap.generated()}}
    if snap.per_page and snap.wrapper != "bare":  # a bare list has nowhere to say it is paged
        try:
            page = max(1, int(request.query.get("page", "1")))
        except ValueError:
            return _error(400, "Bad Request: page must be a number")
        total_pages = max(1, -(-len(entries) // snap.per_page))
        answer["pagination"] = {"current_page": page, "per_page": snap.per_page, "total_entries": len(entries),
                                "total_pages": total_pages}
        entries = entries[(page - 1) * snap.per_page: page * snap.per_page]
    return _wrapped(snap, answer, entries)


def _wrapped(snap: Snapshot, answer: dict[str, Any], entries: list[dict[str, Any]]) -> web.Response:
    """The listing in the snapshot's wrapper: ``{..., <wrapper>: [entries]}`` or a bare list."""
    if snap.wrapper == "bare":
        return web.json_response(entries)
    return web.json_response({**answer, snap.wrapper: entries})


async def _download(request: web.Request) -> web.StreamResponse:
    refused = _check(request, ACCEPT_AVRO)
    if refused is not None:
        return refused
    snap = _snapshot_for(request)
    if isinstance(snap, web.Response):
        return snap
    state: SandboxState = request.app["state"]
    if snap.url_style == "signed" and request.query.get("token") != state.secret("mx-link-token"):
        return _error(403, "Forbidden: link token missing or invalid")
    name = request.match_info["name"]
    match = next((f for f in snap.files if f.name == name), None)
    if match is None or snap.state() != "ready":
        return _error(404, f"Not Found: no file {name} in snapshot {snap.guid}")
    return await serve_bytes(request, match.data, content_type=ACCEPT_AVRO)


async def _admin_create(request: web.Request) -> web.Response:
    state: SandboxState = request.app["state"]
    body: dict[str, Any] = dict(await request.json())
    guid = str(body.pop("guid", "") or f"CSS-{uuid.uuid4().hex[:8]}")
    snap = add_snapshot(state, guid, **body)
    return web.json_response({"guid": snap.guid, "status": snap.state(), "files": len(snap.files)}, status=201)


def setup(app: web.Application, state: SandboxState) -> None:
    for guid in state.config.get(VENDOR, {}).get("snapshots", ["CSS-1234"]):
        add_snapshot(state, str(guid))
    app.router.add_get("/snapshots", _root)
    app.router.add_get("/snapshots/{guid}/files", _listing)
    app.router.add_get("/snapshots/{guid}/files/{name}", _download)
    app.router.add_post("/_sandbox/mx/snapshots", _admin_create)


def connections(base_url: str, state: SandboxState) -> dict[str, dict[str, Any]]:
    return {
        "mx_snapshots_default": {
            "conn_type": "mx_snapshots",
            "host": base_url,
            "login": CLIENT_ID,
            "password": state.secret("mx-api-key"),
            "extra": {"auth_style": "md-api-key"},
        }
    }
