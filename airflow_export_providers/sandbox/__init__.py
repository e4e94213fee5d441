"""A local, faithful simulation of the five vendor export APIs (``python -m airflow_export_providers.sandbox``)."""

from airflow_export_providers.sandbox.server import Fault, Sandbox, SandboxJob, SandboxState, serve_bytes

__all__ = ["Fault", "Sandbox", "SandboxJob", "SandboxState", "serve_bytes"]
