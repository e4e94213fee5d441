# The provider installed into the official Airflow 3.3 image (used by docker-compose.yaml).
FROM apache/airflow:3.3.2-python3.11
COPY --chown=airflow:root pyproject.toml README.md LICENSE NOTICE constraints.txt /opt/provider/
COPY --chown=airflow:root airflow_export_providers /opt/provider/airflow_export_providers
RUN pip install --no-cache-dir -c /opt/provider/constraints.txt "/opt/provider[all]" "moto[server]"
