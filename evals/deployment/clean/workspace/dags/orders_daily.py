"""orders_daily: orders DB replica -> S3 raw -> warehouse -> dbt -> publish fct_orders.
Owner: data-platform. Runbook: ops/runbook.md. SLA-1: fct_orders for D by 06:00 UTC."""
from datetime import timedelta

import pendulum
from airflow import DAG
from airflow.datasets import Dataset
from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.providers.common.sql.operators.sql import SQLCheckOperator, SQLExecuteQueryOperator
from airflow.providers.common.sql.sensors.sql import SqlSensor
from airflow.providers.pagerduty.hooks.pagerduty_events import PagerdutyEventsHook
from airflow.providers.slack.hooks.slack_webhook import SlackWebhookHook
from kubernetes.client import models as k8s

LAKE = "s3://brambleworth-datalake-example"
TABLES = ("orders", "order_items")


def _slack(text):  # Slack #data-oncall
    SlackWebhookHook(slack_webhook_conn_id="slack_data_oncall").send(text=text)


def _page(summary, dedup_key, details):  # PagerDuty service data-platform-oncall
    PagerdutyEventsHook(pagerduty_events_conn_id="pagerduty_data_platform_oncall").send_event(
        summary=summary, severity="critical", source="airflow/orders_daily",
        dedup_key=dedup_key, custom_details={**details, "runbook": "ops/runbook.md"})
    _slack(f":rotating_light: {summary} (paged data-platform-oncall)")


def on_failure(context):  # task: after the last retry; DAG: run failed or timed out
    ti = context.get("task_instance")
    task = ti.task_id if ti else "dag_run"
    _page(f"orders_daily {task} FAILED for {context['ds']}", f"orders_daily/{context['ds']}/{task}",
          {"log_url": ti.log_url if ti else None, "reason": context.get("reason")})


def on_retry(context):
    ti = context["task_instance"]
    _slack(f":warning: orders_daily {ti.task_id} retry {ti.try_number} for {context['ds']}")


def on_sla_miss(dag, task_list, blocking_task_list, slas, blocking_tis):
    _page("orders_daily SLA-1 MISSED: fct_orders not published by 06:00 UTC",
          f"orders_daily/sla/{slas[0].execution_date:%Y-%m-%d}",
          {"blocking": [ti.task_id for ti in blocking_tis]})


def pod(task_id, image, cmds, args, pool, timeout):
    return KubernetesPodOperator(
        task_id=task_id, name=f"orders-{task_id.replace('_', '-')}", image=image,
        cmds=cmds, arguments=args, pool=pool, execution_timeout=timeout,
        namespace="data-pipelines", service_account_name="orders-pipeline",
        container_resources=k8s.V1ResourceRequirements(
            requests={"cpu": "500m", "memory": "1Gi"}, limits={"cpu": "1", "memory": "2Gi"}),
        env_from=[k8s.V1EnvFromSource(secret_ref=k8s.V1SecretEnvSource(name="orders-pipeline-env"))],
        get_logs=True, on_finish_action="delete_succeeded_pod", startup_timeout_seconds=300)


def dbt(task_id, *args, timeout):
    return pod(task_id, "registry.example.com/data/orders-dbt:2.3.0", ["dbt"],
               [*args, "--target", "prod", "--vars", '{"run_date": "{{ ds }}"}'],
               "warehouse_transform", timeout)


with DAG(
    dag_id="orders_daily",
    schedule="0 0 * * *",          # interval = business day D; gated by the day-close sensor
    start_date=pendulum.datetime(2026, 11, 1, tz="UTC"),
    catchup=False,                 # backfills: ops/runbook.md §5
    max_active_runs=1,
    max_active_tasks=3,            # ≤ 3 pods × 1 CPU / 2 GiB = within the 4 CPU / 8 GiB budget
    dagrun_timeout=timedelta(hours=8),
    on_failure_callback=on_failure,
    sla_miss_callback=on_sla_miss,
    default_args={
        "owner": "data-platform",
        "retries": 3,
        "retry_delay": timedelta(minutes=5),
        "retry_exponential_backoff": True,   # 5, 10, 20 min
        "max_retry_delay": timedelta(minutes=30),
        "execution_timeout": timedelta(minutes=45),
        "on_failure_callback": on_failure,
        "on_retry_callback": on_retry,
    },
    tags=["orders", "tier-1"],
) as dag:
    wait_for_day_close = SqlSensor(
        task_id="wait_for_day_close", conn_id="orders_db_replica",
        sql="SELECT status = 'complete' FROM ops.day_close_log WHERE business_date = '{{ ds }}'",
        mode="reschedule", poke_interval=300, timeout=4 * 3600,  # fails (pages) at 04:00 UTC
        retries=0)

    extracts = [
        pod(f"extract_{t}", "registry.example.com/data/orders-extract:1.4.2",
            ["python", "/app/orders_extract.py"],
            ["--table", t, "--business-date", "{{ ds }}",
             "--interval-start", "{{ data_interval_start.isoformat() }}",
             "--interval-end", "{{ data_interval_end.isoformat() }}",
             "--output", f"{LAKE}/raw/{t}/", "--dead-letter", f"{LAKE}/dead-letter/{t}/",
             "--max-reject-ratio", "{{ var.value.get('orders_max_reject_ratio', '0.001') }}"],
            "orders_db_replica", timedelta(minutes=60))   # pool: 2 replica connections max
        for t in TABLES]

    load_raw = SQLExecuteQueryOperator(   # replaces D's rows: safe to rerun
        task_id="load_raw", conn_id="snowflake_loader", autocommit=False,
        sql=[f"DELETE FROM raw_orders.{t} WHERE _batch_date = '{{{{ ds }}}}'" for t in TABLES]
        + [f"COPY INTO raw_orders.{t} FROM @raw_orders.lake/{t}/dt={{{{ ds }}}}/ "
           "FILE_FORMAT = (TYPE = PARQUET) MATCH_BY_COLUMN_NAME = CASE_INSENSITIVE "
           "PATTERN = '.*part-[0-9]+[.]parquet' FORCE = TRUE" for t in TABLES],
        execution_timeout=timedelta(minutes=30))

    source_freshness = dbt("dbt_source_freshness", "source", "freshness",
                           "--select", "source:orders_raw", timeout=timedelta(minutes=10))
    dbt_run = dbt("dbt_run", "run", "--select", "+fct_orders", timeout=timedelta(minutes=60))
    dbt_test = dbt("dbt_test", "test", "--select", "+fct_orders", timeout=timedelta(minutes=30))

    check_fresh = SQLCheckOperator(
        task_id="check_fct_orders_fresh", conn_id="snowflake_loader",
        sql="SELECT COUNT(*) > 0, MAX(dbt_updated_at) >= DATEADD('hour', -2, CURRENT_TIMESTAMP()) "
            "FROM analytics.marts.fct_orders WHERE order_date = '{{ ds }}'",
        execution_timeout=timedelta(minutes=5))

    publish = SQLExecuteQueryOperator(
        task_id="publish_fct_orders", conn_id="snowflake_loader",
        sql="INSERT INTO ops.publication_log (dataset, business_date, published_at) "
            "VALUES ('fct_orders', '{{ ds }}', CURRENT_TIMESTAMP())",
        sla=timedelta(hours=6),      # data_interval_end (00:00) + 6 h = 06:00 UTC
        outlets=[Dataset("snowflake://ANALYTICS/MARTS/FCT_ORDERS")],
        execution_timeout=timedelta(minutes=5))

    (wait_for_day_close >> extracts >> load_raw >> source_freshness >> dbt_run >> dbt_test
     >> check_fresh >> publish)
