"""docker-compose.yaml cannot run here (no docker engine): check it against what the Celery e2e test ran.

deploy/stack.py reads docker-compose.yaml and the env files it names and turns each service into local
processes (``Plan``); tests/e2e/test_celery_stack.py runs exactly that plan. These tests pin both ends:
the compose file says what a working CeleryExecutor deployment needs (the six faults of issue 19),
and the plan the e2e test ran is the compose file's command, env and health check of every service,
changed only by the documented address translation.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from deploy.stack import (
    JWT_MIN_BYTES,
    SECRET_KEYS,
    Instance,
    Plan,
    ensure_dotenv,
    read_env_file,
    services,
)

ROOT = Path(__file__).resolve().parents[2]
AIRFLOW_SERVICES = ("airflow-init", "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer",
                    "airflow-worker")
LONG_RUNNING = AIRFLOW_SERVICES[1:]
COMPOSE_HOSTS = re.compile(r"\b(postgres|redis|s3|azurite|sandbox|airflow-apiserver):\d+")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / "docker-compose.yaml").read_text()))


@pytest.fixture(scope="module")
def dotenv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("env") / ".env"
    ensure_dotenv(path)
    return path


@pytest.fixture(scope="module")
def plan(compose: dict[str, Any], dotenv: Path, tmp_path_factory: pytest.TempPathFactory) -> Plan:
    """The plan exactly as make_stack() builds it for the e2e test (its test additions left out)."""
    return Plan(compose, tmp_path_factory.mktemp("home"), dotenv=dotenv)


@pytest.fixture(scope="module")
def instances(plan: Plan) -> dict[str, Instance]:
    return {i.name: i for i in plan.instances()}


# ---- the compose file itself ------------------------------------------------------------------------
def test_production_shaped_services(compose: dict[str, Any], dotenv: Path) -> None:
    svcs = services(compose, dotenv)
    for name in ("postgres", "redis", *AIRFLOW_SERVICES, "sandbox", "s3", "azurite", "local-destinations"):
        assert name in svcs, f"service {name} missing"
    for name in AIRFLOW_SERVICES:
        raw = compose["services"][name]
        assert raw["build"] == "." and raw["env_file"] == ["deploy/airflow.env", "deploy/local.env", ".env"]
        assert "./dags_examples:/opt/airflow/dags" in raw["volumes"]
        assert svcs[name].depends_on["postgres"] == "service_healthy" and svcs[name].depends_on["redis"] == "service_healthy"
        if name != "airflow-init":
            assert svcs[name].healthcheck, f"{name} has no health check"
            assert svcs[name].depends_on["airflow-init"] == "service_completed_successfully"
    assert svcs["airflow-worker"].depends_on["airflow-apiserver"] == "service_healthy"
    assert svcs["airflow-worker"].replicas == 2, "two Celery workers, as the e2e test runs"
    commands = {n: " ".join(svcs[n].command) for n in LONG_RUNNING}
    assert commands == {
        "airflow-apiserver": "airflow api-server --host 0.0.0.0 --port 8080",
        "airflow-scheduler": "airflow scheduler",
        "airflow-dag-processor": "airflow dag-processor",
        "airflow-triggerer": "airflow triggerer",
        "airflow-worker": "airflow celery worker",
    }


def test_celery_drivers_result_backend_and_timeouts(compose: dict[str, Any], dotenv: Path) -> None:
    """Issue 19 points 1 and 6: the result backend names its driver; a dead worker's task is noticed in
    a minute and its message is not parked for a day."""
    env = services(compose, dotenv)["airflow-worker"].env
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg2://")
    assert env["AIRFLOW__CELERY__RESULT_BACKEND"].startswith("db+postgresql+psycopg2://"), \
        "plain db+postgresql:// makes the workers die with SQLAlchemy 2.1"
    assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://redis:")
    assert int(env["AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT"]) < 86400
    assert int(env["AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT"]) == 60


def test_scheduler_health_check_is_enabled_on_the_port_it_curls(compose: dict[str, Any], dotenv: Path) -> None:
    """Point 3: the health check curls 8974, so the scheduler must serve it there."""
    sched = services(compose, dotenv)["airflow-scheduler"]
    assert sched.env["AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK"] == "true"
    port = sched.env["AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT"]
    assert sched.healthcheck == ["CMD", "curl", "--fail", f"http://localhost:{port}/health"]
    assert int(port) in sched.ports


def test_shared_secrets_and_log_volume(compose: dict[str, Any], dotenv: Path) -> None:
    """Point 4: one Fernet key, [api] secret_key and 64+ byte JWT secret (from .env) for every process,
    and one log folder (a volume) for all of them."""
    svcs = services(compose, dotenv)
    for key in SECRET_KEYS:
        values = {svcs[n].env.get(key) for n in AIRFLOW_SERVICES}
        assert len(values) == 1 and None not in values and "" not in values, key
    assert len(svcs["airflow-worker"].env["AIRFLOW__API_AUTH__JWT_SECRET"].encode()) >= JWT_MIN_BYTES
    assert not any(k in read_env_file(ROOT / "deploy" / "airflow.env") for k in SECRET_KEYS), "no secret in the repository"
    log_folder = svcs["airflow-worker"].env["AIRFLOW__LOGGING__BASE_LOG_FOLDER"]
    for name in AIRFLOW_SERVICES:
        assert svcs[name].volumes.get(log_folder) == "airflow-logs", f"{name} does not mount the shared log volume"
    assert "airflow-logs" in compose["volumes"]
    assert ".env" in (ROOT / ".gitignore").read_text().split() or "/.env" in (ROOT / ".gitignore").read_text().split()


def test_dotenv_with_a_short_jwt_secret_is_refused(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    path.write_text("AIRFLOW__CORE__FERNET_KEY=k\nAIRFLOW__API__SECRET_KEY=s\nAIRFLOW__API_AUTH__JWT_SECRET=short\n")
    with pytest.raises(SystemExit, match="JWT_SECRET must be at least 64 bytes"):
        ensure_dotenv(path)
    path.write_text("AIRFLOW__CORE__FERNET_KEY=k\n")
    with pytest.raises(SystemExit, match="AIRFLOW__API__SECRET_KEY, AIRFLOW__API_AUTH__JWT_SECRET missing"):
        ensure_dotenv(path)


def test_env_files_are_read_by_compose_as_by_deploy_stack(tmp_path: Path) -> None:
    """Compose strips quotes and interpolates '$': values that would differ are refused, not misread."""
    for name in ("airflow.env", "local.env"):
        assert read_env_file(ROOT / "deploy" / name)
    for line in ('K="quoted"', "K='quoted'", "K=a$b", "K=value # comment", "not a pair"):
        (tmp_path / "x.env").write_text(line + "\n")
        with pytest.raises(ValueError, match="x.env:1"):
            read_env_file(tmp_path / "x.env")


def test_sandbox_is_reachable_by_service_name_with_fixed_helper_ports(compose: dict[str, Any], dotenv: Path) -> None:
    """Point 5: the sandbox tells clients 'sandbox' (not 0.0.0.0), its POND gateway and Azure AD stand-in
    listen on fixed, exposed ports, its CA file and connections go to the volume Airflow reads, and the
    hooks' plain-http opt-in names exactly that host."""
    svcs = services(compose, dotenv)
    sb = svcs["sandbox"]
    args = dict(zip(sb.command[3::2], sb.command[4::2], strict=True))
    assert sb.command[:3] == ["python", "-m", "airflow_export_providers.sandbox"]
    assert args["--host"] == "0.0.0.0" and args["--public-host"] == "sandbox"
    assert {int(args["--port"]), int(args["--gateway-port"]), int(args["--aad-port"])} == set(sb.ports)
    airflow = svcs["airflow-worker"].env
    connections_file = re.search(r'"connections_file_path": "([^"]+)"', airflow["AIRFLOW__SECRETS__BACKEND_KWARGS"])
    assert connections_file and args["--connections-file"] == connections_file.group(1)
    volume_dir = str(Path(args["--connections-file"]).parent)
    assert args["--tls-dir"] == volume_dir
    assert sb.volumes[volume_dir] == svcs["airflow-worker"].volumes[volume_dir] == "airflow-connections"
    assert airflow["AIRFLOW__EXPORT_PROVIDERS__ALLOW_PLAIN_HTTP_HOSTS"] == args["--public-host"]
    assert "AIRFLOW__EXPORT_PROVIDERS__ALLOW_PLAIN_HTTP_HOSTS" not in read_env_file(ROOT / "deploy" / "airflow.env"), \
        "the opt-in belongs to the stand-ins' env file only"
    assert args["--s3-endpoint"] == "http://s3:5000" and 5000 in svcs["s3"].ports


def test_stand_ins_are_optional_and_pinned(compose: dict[str, Any], dotenv: Path) -> None:
    svcs = services(compose, dotenv)
    for name in ("sandbox", "s3", "azurite", "local-destinations"):
        assert svcs[name].profiles == ["local"]
    for name in ("sandbox", "s3", "azurite"):
        assert svcs[name].healthcheck
    makefile = (ROOT / "Makefile").read_text()
    azurite = re.search(r"AZURITE_VERSION := (\S+)", makefile)
    assert azurite and svcs["azurite"].image.endswith(f":{azurite.group(1)}"), "the Azurite the tests run"
    assert svcs["s3"].image == "airflow-export-providers:local" and svcs["s3"].command[0] == "moto_server"
    for name, svc in compose["services"].items():
        for dep in svc.get("depends_on", {}):
            assert dep in compose["services"], f"{name} depends on unknown service {dep}"
        image = svc.get("image", "")
        if image and not svc.get("build") and not image.startswith("airflow-export-providers:"):
            assert ":" in image and not image.endswith(":latest"), f"{name}: pin the image tag"


def test_example_destinations_are_created(dotenv: Path) -> None:
    local = read_env_file(ROOT / "deploy" / "local.env")
    sources = "\n".join(p.read_text() for p in (ROOT / "dags_examples").glob("*.py"))
    assert set(re.findall(r'bucket="([^"{]+)"', sources)) <= set(local["AEP_LOCAL_BUCKETS"].split(","))
    assert set(re.findall(r'container="([^"{]+)"', sources)) <= set(local["AEP_LOCAL_CONTAINERS"].split(","))


def test_dockerfile_installs_the_provider_and_the_celery_drivers_with_the_pins() -> None:
    """Point 2: the Celery provider, psycopg2 and asyncpg (``airflow db migrate`` on Postgres) in the image,
    pinned by constraints.txt like everything else."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert dockerfile.startswith("# ") and "FROM apache/airflow:3.3" in dockerfile
    install = dockerfile[dockerfile.index("RUN pip install"):]
    assert "-c /opt/provider/constraints.txt" in install and "/opt/provider[all]" in install
    assert "LICENSE NOTICE" in dockerfile, "the build needs the license files pyproject.toml names"
    pins = {line.split("==")[0].lower() for line in (ROOT / "constraints.txt").read_text().splitlines() if "==" in line}
    for package in ("apache-airflow-providers-celery", "psycopg2-binary", "asyncpg"):
        assert package in install and package in pins, package
    assert "COPY --chown=airflow:root deploy /opt/provider/deploy" in dockerfile, "local-destinations runs deploy/stack.py"


# ---- the plan the e2e test ran: compose, translated and nothing else -----------------------------------
def test_every_compose_service_is_one_or_more_local_instances(compose: dict[str, Any], instances: dict[str, Instance]) -> None:
    names = {i.service.name for i in instances.values()}
    assert names == set(compose["services"]), "every service of the local profile runs"
    assert [n for n in instances if n.startswith("airflow-worker")] == ["airflow-worker-1", "airflow-worker-2"]


def test_local_commands_are_the_compose_commands(plan: Plan, instances: dict[str, Instance]) -> None:
    port = plan.local_port
    assert instances["airflow-apiserver"].argv == ["airflow", "api-server", "--host", "127.0.0.1", "--port",
                                                   str(port("airflow-apiserver", 8080))]
    for name in ("airflow-scheduler", "airflow-dag-processor", "airflow-triggerer"):
        assert instances[name].argv == instances[name].service.command
    for n in (1, 2):  # containers have their own host names, local workers their own node names
        worker = instances[f"airflow-worker-{n}"]
        assert worker.argv == ["airflow", "celery", "worker", "--celery-hostname", f"celery@airflow-worker-{n}"]
        assert worker.env["HOSTNAME"] == f"airflow-worker-{n}"
    sandbox = instances["sandbox"]
    args = dict(zip(sandbox.argv[3::2], sandbox.argv[4::2], strict=True))
    assert args["--host"] == args["--public-host"] == "127.0.0.1"
    assert args["--port"] == str(port("sandbox", 8999)) and args["--gateway-port"] == str(port("sandbox", 8998))
    assert args["--aad-port"] == str(port("sandbox", 8997)) and args["--s3-endpoint"] == plan.url("s3", 5000)
    assert args["--connections-file"] == str(plan.home / "volumes" / "airflow-connections" / "connections.json")
    assert instances["s3"].argv == ["moto_server", "-H", "127.0.0.1", "-p", str(port("s3", 5000))]
    assert instances["azurite"].argv == ["azurite-blob", "--blobHost", "127.0.0.1", "--blobPort", str(port("azurite", 10000)),
                                         "--skipApiVersionCheck"]
    assert instances["local-destinations"].argv == ["python", str(ROOT / "deploy" / "stack.py"), "destinations"]


def test_local_health_checks_are_the_compose_health_checks(plan: Plan, instances: dict[str, Instance]) -> None:
    for inst in instances.values():
        compose_test = inst.service.healthcheck
        if compose_test[:1] == ["CMD-SHELL"] or compose_test[1:2] in (["pg_isready"], ["redis-cli"]):
            assert inst.health == compose_test, inst.name  # run as written (HOSTNAME set per instance)
    assert instances["airflow-apiserver"].health[-1] == plan.url("airflow-apiserver", 8080, "/execution/health")
    assert instances["airflow-scheduler"].health[-1] == plan.url("airflow-scheduler", 8974, "/health")
    assert instances["azurite"].health == ["CMD", "nc", "-z", "localhost", str(plan.local_port("azurite", 10000))]
    assert instances["sandbox"].health[-1] == plan.url("sandbox", 8999, "/_sandbox/stats")


def test_local_env_is_the_compose_env_translated(plan: Plan, instances: dict[str, Instance], compose: dict[str, Any],
                                                 dotenv: Path) -> None:
    svcs = services(compose, dotenv)
    own_ports = {"AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT", "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT",
                 "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT"}
    for inst in instances.values():
        compose_env = svcs[inst.service.name].env
        added = set(inst.env) - set(compose_env)
        assert added <= {"AIRFLOW_HOME", "HOSTNAME"}, (inst.name, added)
        for key, value in inst.env.items():
            assert not COMPOSE_HOSTS.search(value) and "/opt/airflow" not in value, (inst.name, key, value)
            if key in compose_env and value != compose_env[key]:
                translated = compose_env[key]
                for (svc, cport), local in ((tuple(k.split(":")), v) for k, v in _port_table(plan).items()):
                    translated = translated.replace(f"{svc}:{cport}", f"127.0.0.1:{local}")
                assert value == translated or key in own_ports or "/opt/airflow" in compose_env[key], (inst.name, key)
    worker_ports = {instances[f"airflow-worker-{n}"].env["AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"] for n in (1, 2)}
    assert len(worker_ports) == 2, "two workers on one host need two log-server ports"
    sched = instances["airflow-scheduler"].env
    assert sched["AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT"] == str(plan.local_port("airflow-scheduler", 8974))
    assert sched["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == plan.url("airflow-apiserver", 8080, "/execution/")
    airflow_envs = [instances[n].env for n in instances if n.startswith("airflow-")]
    shared = {k for k in airflow_envs[0] if k not in own_ports | {"HOSTNAME", "DUMB_INIT_SETSID"}}
    assert all({k: e.get(k) for k in shared} == {k: airflow_envs[0][k] for k in shared} for e in airflow_envs), \
        "every Airflow process runs with the same settings and secrets"


def _port_table(plan: Plan) -> dict[str, int]:
    return {f"{inst}:{cport}": local for inst, ports in plan.ports.items() for cport, local in ports.items()}
