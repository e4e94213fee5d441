# The provider installed into the official Airflow 3.3 image (used by docker-compose.yaml).
FROM apache/airflow:3.3.2-python3.11
COPY --chown=airflow:root pyproject.toml README.md LICENSE NOTICE constraints.txt /opt/provider/
COPY --chown=airflow:root airflow_export_providers /opt/provider/airflow_export_providers
COPY --chown=airflow:root deploy /opt/provider/deploy
# The CeleryExecutor's drivers, pinned like the rest: the Celery provider, psycopg2 (the metadata DB and
# Celery's result backend) and asyncpg (`airflow db migrate` on Postgres needs it); moto's server is the
# compose "local" profile's S3.
RUN pip install --no-cache-dir -c /opt/provider/constraints.txt "/opt/provider[all]" "moto[server]" \
        apache-airflow-providers-celery psycopg2-binary asyncpg \
    && mkdir -p /opt/airflow/connections
