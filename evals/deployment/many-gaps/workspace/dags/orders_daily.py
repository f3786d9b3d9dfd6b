"""orders_daily: orders DB replica -> S3 raw -> warehouse -> dbt -> publish fct_orders.
Owner: data-platform."""
import logging

import pendulum
from airflow import DAG
from airflow.datasets import Dataset
from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.providers.common.sql.operators.sql import SQLExecuteQueryOperator
from airflow.providers.slack.hooks.slack_webhook import SlackWebhookHook
from kubernetes.client import models as k8s

LAKE = "s3://brambleworth-datalake-example"
TABLES = ("orders", "order_items")
ALERT_CHANNEL = ""
log = logging.getLogger(__name__)


def on_failure(context):
    ti = context.get("task_instance")
    log.error("orders_daily %s failed for %s", ti.task_id if ti else "dag_run", context["ds"])
    if ALERT_CHANNEL:
        SlackWebhookHook(slack_webhook_conn_id="slack_default", channel=ALERT_CHANNEL).send(
            text=f"orders_daily failed for {context['ds']}")


def pod(task_id, image, cmds, args):
    return KubernetesPodOperator(
        task_id=task_id, name=f"orders-{task_id.replace('_', '-')}", image=image,
        cmds=cmds, arguments=args,
        namespace="data-pipelines", service_account_name="orders-pipeline",
        env_from=[k8s.V1EnvFromSource(secret_ref=k8s.V1SecretEnvSource(name="orders-pipeline-env"))],
        get_logs=True, on_finish_action="delete_pod")


def dbt(task_id, *args):
    return pod(task_id, "registry.example.com/data/orders-dbt:2.3.0", ["dbt"],
               [*args, "--target", "prod", "--vars", '{"run_date": "{{ ds }}"}'])


with DAG(
    dag_id="orders_daily",
    schedule="0 3 * * *",          # after the nightly day-close
    start_date=pendulum.datetime(2026, 11, 1, tz="UTC"),
    catchup=False,
    default_args={
        "owner": "data-platform",
        "retries": 0,
        "on_failure_callback": on_failure,
    },
    tags=["orders"],
) as dag:
    extracts = [
        pod(f"extract_{t}", "registry.example.com/data/orders-extract:1.4.2",
            ["python", "/app/orders_extract.py"],
            ["--table", t, "--business-date", "{{ ds }}",
             "--interval-start", "{{ data_interval_start.isoformat() }}",
             "--interval-end", "{{ data_interval_end.isoformat() }}",
             "--output", f"{LAKE}/raw/{t}/"])
        for t in TABLES]

    load_raw = SQLExecuteQueryOperator(
        task_id="load_raw", conn_id="snowflake_loader", autocommit=False,
        sql=[f"DELETE FROM raw_orders.{t} WHERE _batch_date = '{{{{ ds }}}}'" for t in TABLES]
        + [f"COPY INTO raw_orders.{t} FROM @raw_orders.lake/{t}/dt={{{{ ds }}}}/ "
           "FILE_FORMAT = (TYPE = PARQUET) MATCH_BY_COLUMN_NAME = CASE_INSENSITIVE "
           "PATTERN = '.*part-[0-9]+[.]parquet' FORCE = TRUE" for t in TABLES])

    dbt_run = dbt("dbt_run", "run", "--select", "+fct_orders")
    dbt_test = dbt("dbt_test", "test", "--select", "+fct_orders")

    publish = SQLExecuteQueryOperator(
        task_id="publish_fct_orders", conn_id="snowflake_loader",
        sql="INSERT INTO ops.publication_log (dataset, business_date, published_at) "
            "VALUES ('fct_orders', '{{ ds }}', CURRENT_TIMESTAMP())",
        outlets=[Dataset("snowflake://ANALYTICS/MARTS/FCT_ORDERS")])

    extracts >> load_raw >> dbt_run >> dbt_test >> publish
