"""A transfer task run in its own OS process, for landings that must really overlap.

``land_in_process`` builds the S3 or Azure transfer operator in a child process (spawned: nothing is
shared with the test process but the environment, i.e. the connections) and runs its ``execute``.
The only thing added is a rendezvous: every child waits at ``barrier`` right before it claims the
prefix, so all of them have read the prefix's state and staged every file before any publishes —
the worst overlap two real runs can have, made certain instead of left to timing.
"""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any


def make_transfer(kind: str, name: str, job: dict[str, Any], prefix: str, **kwargs: Any) -> Any:
    from airflow_export_providers.transfers.export_to_azure_blob import ExportToAzureBlobOperator
    from airflow_export_providers.transfers.export_to_s3 import ExportToS3Operator
    from tests.support.destinations import PART

    kwargs.setdefault("part_size", PART)
    kwargs.setdefault("asset", False)
    if kind == "s3":
        return ExportToS3Operator(task_id="land", export=job, bucket=name, prefix=prefix, **kwargs)
    return ExportToAzureBlobOperator(task_id="land", export=job, container=name, prefix=prefix, **kwargs)


class Store:
    """A task_state_store stand-in for direct ``execute`` calls (dag.test() runs use Airflow's own)."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def set(self, key: str, value: Any) -> None:
        self.values[key] = json.loads(json.dumps(value))

    def delete(self, key: str) -> None:
        self.values.pop(key, None)


def task_context(run_id: str, *, dag_id: str = "contract", task_id: str = "land", try_number: int = 1,
                 store: Any = None) -> dict[str, Any]:
    """The parts of an Airflow context a transfer reads: who runs (``ti``) and its ``task_state_store``."""
    ti = SimpleNamespace(dag_id=dag_id, task_id=task_id, run_id=run_id, map_index=-1, try_number=try_number)
    return {"ti": ti, "task_state_store": store}


def land_in_process(kind: str, name: str, job: dict[str, Any], prefix: str, run_id: str, barrier: Any, results: Any,
                    task_id: str = "land", map_index: int = -1, with_event: bool = False) -> None:
    """``with_event``: the transfer declares its Asset and the result is ``{"uris", "event"}`` (the
    event's extra, as Airflow would store it)."""
    from airflow_export_providers.core import manifest

    claim = manifest.ExportLanding._claim

    def claim_together(self: Any, files: Any) -> Any:
        barrier.wait(180)
        return claim(self, files)

    manifest.ExportLanding._claim = claim_together  # type: ignore[method-assign]
    try:
        context = task_context(run_id, task_id=task_id)
        context["ti"].map_index = map_index
        if with_event:
            from airflow.sdk.execution_time.context import OutletEventAccessors

            context["outlet_events"] = OutletEventAccessors()
        transfer = make_transfer(kind, name, job, prefix, **({"asset": None} if with_event else {}))
        landed = transfer.execute(context)
        uris = [x["uri"] for x in landed]
        results.put((run_id, "ok", {"uris": uris, "event": dict(context["outlet_events"][transfer.asset].extra)} if with_event else uris))
    except manifest.LandingConflict as exc:
        results.put((run_id, "conflict", str(exc)))
    except BaseException as exc:  # reported to the test, which fails on it
        results.put((run_id, "error", f"{type(exc).__name__}: {exc}"))


def race_two_landings(dest: Any, files: Any, prefix: str, same: bool, seed: int, *, with_event: bool = False) -> tuple[dict[str, dict[str, bytes]], dict[str, tuple[str, Any]]]:
    """Two processes (``run-a``, ``run-b``) land an export each into ``prefix`` of ``dest`` at once, both
    having staged every file before either publishes. ``same``: both exports have the very same bytes.
    Returns the exports' files by run and each run's ``(outcome, detail)`` (see ``land_in_process``)."""
    import multiprocessing

    from airflow_export_providers.core.job import ExportFile
    from tests.support.destinations import PART
    from tests.support.files_hook import CONN_ID, export_job, random_bytes

    a = {"day.json": random_bytes(PART + 11, seed=seed), "small.json": b"a" * 100}
    b = a if same else {"day.json": random_bytes(PART + 11, seed=seed + 1), "small.json": b"b" * 100}
    sources = {"run-a": a, "run-b": b}
    for run, data in sources.items():
        for name, body in data.items():
            files.files[f"{run}-{name}"] = body
    jobs = {run: export_job([ExportFile(vendor="files", conn_id=CONN_ID, job_id=run, key=f"{run}-{n}", name=n, size=len(body))
                             for n, body in data.items()], job_id=run).to_dict()
            for run, data in sources.items()}
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=land_in_process, args=(dest.kind, dest.name, jobs[run], prefix, run, barrier, results),
                         kwargs={"with_event": with_event}) for run in sources]
    for p in procs:
        p.start()
    outcomes: dict[str, tuple[str, Any]] = {}
    for _ in procs:
        run, outcome, detail = results.get(timeout=240)
        outcomes[run] = (outcome, detail)
    for p in procs:
        p.join(60)
    return sources, outcomes
