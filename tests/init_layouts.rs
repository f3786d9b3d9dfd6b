//! `hatrack init` on repositories laid out as the ecosystems lay them out — dbt in a
//! subfolder with its own paths, an Astronomer project, a monorepo with two pipelines,
//! Dagster next to dbt, plain Airflow with plugins, Kubernetes with Helm: each binds every
//! Reads item with no TODO, and `render` works for every step with no hand edits.

mod support;

use std::path::Path;

use support::Test;

/// Every step of the deployment stage `render` can show.
const STEPS: [&str; 6] = [
    "pipeline-engineer",
    "sre",
    "judge/pipeline-engineer",
    "judge/sre",
    "review/reliability",
    "signal",
];

fn write(root: &Path, files: &[(&str, &str)]) {
    for (path, text) in files {
        let p = root.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
}

/// Runs `init` in `repo` (expecting every item bound) and returns the file it wrote in `ws`.
fn init_all_bound(repo: &Path, ws: &Path) -> String {
    Test::new()
        .current_dir(repo)
        .arg("init")
        .stdout_has("5 input(s) bound for stage deployment, 0 to fill in")
        .stdout_lacks("TODO")
        .run();
    let text = std::fs::read_to_string(ws.join("hatrack.toml")).unwrap();
    assert!(!text.contains("# TODO:"), "{text}");
    text
}

/// The `[inputs]` line of `key` in a written file.
fn line<'t>(text: &'t str, key: &str) -> &'t str {
    let start = format!("\"{key}\" = ");
    text.lines()
        .find(|l| l.starts_with(&start))
        .unwrap_or_else(|| panic!("no {key:?} in\n{text}"))
}

/// Renders every step in `ws` (each must succeed) and returns all that was shown.
fn render_every_step(ws: &Path) -> String {
    let mut all = String::new();
    for step in STEPS {
        let out = Test::new().current_dir(ws).args(["render", step]).run();
        all.push_str(&out.stdout);
    }
    all
}

fn shown(rendered: &str, file: &str) -> bool {
    rendered.contains(&format!("<<<BEGIN {file}>>>"))
}

const SCHEMA_WITH_TESTS: &str = "version: 2\nmodels:\n  - name: fct\n    columns:\n      - name: id\n        data_tests: [unique, not_null]\n";

#[test]
fn dbt_in_a_subfolder_with_its_own_model_paths_is_bound_by_what_dbt_project_yml_says() {
    let repo = tempfile::tempdir().unwrap();
    let r = repo.path();
    write(
        r,
        &[
            ("README.md", "# Revenue analytics\n\nDaily revenue marts for finance; ready by 06:00 UTC.\n"),
            ("analytics/dbt_project.yml", "name: revenue\nversion: '1.0.0'\nprofile: revenue\nmodel-paths: [\"transform\"]\ntest-paths: [\"data_tests\"]\nmacro-paths: [\"dbt_macros\"]\nsnapshot-paths: [\"history\"]\n"),
            ("analytics/transform/staging/stg_invoices.sql", "select * from {{ source('billing', 'invoices') }}\n"),
            ("analytics/transform/staging/_staging.yml", SCHEMA_WITH_TESTS),
            ("analytics/transform/marts/fct_revenue.sql", "select sum(amount) from {{ ref('stg_invoices') }}\n"),
            ("analytics/data_tests/assert_revenue_positive.sql", "select * from {{ ref('fct_revenue') }} where amount < 0\n"),
            ("analytics/dbt_macros/cents_to_dollars.sql", "{% macro cents_to_dollars(c) %}{{ c }} / 100{% endmacro %}\n"),
            ("analytics/history/invoices_snapshot.sql", "{% snapshot invoices_snapshot %}select 1{% endsnapshot %}\n"),
            ("analytics/target/run_results.json", "{\"results\": [{\"unique_id\": \"test.revenue.unique_fct_id\", \"status\": \"pass\"}]}\n"),
            ("analytics/target/manifest.json", "{\"nodes\": {}}\n"),
            ("analytics/target/compiled/revenue/fct_revenue.sql", "select 1\n"),
            ("analytics/dbt_packages/dbt_utils/models/validation_report_util.sql", "select 1\n"),
            ("ingestion/load_invoices.py", "def load():\n    pass\n"),
            ("docs/operations.md", "# Revenue marts\n\n## On-call\n\nPage #finance-data; rerun from the last snapshot.\n"),
            (".github/workflows/dbt.yml", "on: push\njobs:\n  build:\n    runs-on: ubuntu-latest\n"),
        ],
    );
    let text = init_all_bound(r, r);
    assert_eq!(
        line(&text, "transformation code"),
        r#""transformation code" = ["analytics/transform/**/*.sql", "analytics/transform/**/*.yml", "analytics/dbt_project.yml", "analytics/dbt_macros/**/*.sql", "analytics/history/**/*.sql", "analytics/data_tests/**/*.sql"]"#
    );
    assert_eq!(
        line(&text, "validation report"),
        r#""validation report" = ["analytics/target/run_results.json", "analytics/transform/staging/_staging.yml", "analytics/data_tests/**/*.sql"]"#
    );
    assert_eq!(
        line(&text, "sla requirements from discovery"),
        r#""sla requirements from discovery" = ["README.md", "docs/operations.md"]"#
    );
    let all = render_every_step(r);
    for file in [
        "analytics/transform/marts/fct_revenue.sql",
        "analytics/target/run_results.json",
        "ingestion/load_invoices.py",
        ".github/workflows/dbt.yml",
    ] {
        assert!(shown(&all, file), "{file} not shown");
    }
    assert!(!all.contains("dbt_packages/") && !all.contains("target/manifest.json"));
    assert!(!all.contains("target/compiled/"));
}

#[test]
fn an_astronomer_project_binds_its_dags_dbt_and_deployment_files_and_honours_airflowignore() {
    let repo = tempfile::tempdir().unwrap();
    let r = repo.path();
    write(
        r,
        &[
            (".astro/config.yaml", "project:\n  name: orders\n"),
            ("Dockerfile", "FROM quay.io/astronomer/astro-runtime:12.1.0\n"),
            ("requirements.txt", "astronomer-cosmos==1.7.0\ndbt-postgres==1.8.2\n"),
            ("packages.txt", "libpq-dev\n"),
            ("airflow_settings.yaml", "airflow:\n  connections:\n    - conn_id: warehouse\n      conn_password: not-for-prompts\n"),
            ("README.md", "# Orders on Astro\n\nOrders land hourly in the warehouse; the SLA is 30 minutes after the hour.\n"),
            ("dags/.airflowignore", "scratch_.*\n"),
            ("dags/orders_dbt.py", "from cosmos import DbtDag\n\norders = DbtDag(dag_id='orders_dbt')\n"),
            ("dags/scratch_experiment.py", "print('not a DAG')\n"),
            ("include/extract_orders.py", "def extract():\n    pass\n"),
            ("dbt/dbt_project.yml", "name: orders\nprofile: orders\n"),
            ("dbt/models/staging/stg_orders.sql", "select * from {{ source('shop', 'orders') }}\n"),
            ("dbt/models/staging/schema.yml", SCHEMA_WITH_TESTS),
            ("dbt/models/marts/fct_orders.sql", "select * from {{ ref('stg_orders') }}\n"),
            ("tests/dags/test_dag_example.py", "def test_no_import_errors():\n    pass\n"),
        ],
    );
    let text = init_all_bound(r, r);
    assert_eq!(
        line(&text, "extraction jobs"),
        r#""extraction jobs" = ["dags/orders_dbt.py", "include/**/*.py"]"#
    );
    assert_eq!(
        line(&text, "transformation code"),
        r#""transformation code" = ["dbt/models/**/*.sql", "dbt/models/**/*.yml", "dbt/dbt_project.yml"]"#
    );
    assert_eq!(
        line(&text, "validation report"),
        r#""validation report" = ["dbt/models/staging/schema.yml"]"#
    );
    assert_eq!(
        line(&text, "infrastructure requirements from the intent"),
        r#""infrastructure requirements from the intent" = ["README.md", "Dockerfile", ".astro/config.yaml", "requirements.txt", "packages.txt"]"#
    );
    let all = render_every_step(r);
    assert!(shown(&all, "dags/orders_dbt.py"));
    assert!(
        !all.contains("scratch_experiment"),
        "an ignored file was bound"
    );
    assert!(
        !all.contains("not-for-prompts"),
        "connection settings were bound"
    );
}

#[test]
fn a_monorepo_with_two_pipelines_gets_a_workspace_each_and_a_batch_manifest() {
    let repo = tempfile::tempdir().unwrap();
    let r = repo.path();
    write(
        r,
        &[
            (
                "README.md",
                "# Data platform\n\nTwo pipelines, one repository.\n",
            ),
            (
                "infra/terraform/main.tf",
                "resource \"null_resource\" \"warehouse\" {}\n",
            ),
            (".github/workflows/ci.yml", "on: pull_request\n"),
            (
                "pipelines/orders/README.md",
                "# Orders\n\nIntent: orders by 07:00 UTC; on-call #orders-data.\n",
            ),
            (
                "pipelines/orders/airflow/dags/orders_daily.py",
                "from airflow import DAG\n",
            ),
            ("pipelines/orders/dbt/dbt_project.yml", "name: orders\n"),
            (
                "pipelines/orders/dbt/models/fct_orders.sql",
                "select 1 as id\n",
            ),
            ("pipelines/orders/dbt/models/schema.yml", SCHEMA_WITH_TESTS),
            (
                "pipelines/payments/README.md",
                "# Payments\n\nIntent: settled payments hourly; SLA 15 minutes.\n",
            ),
            (
                "pipelines/payments/dags/payments_hourly.py",
                "from airflow import DAG\n",
            ),
            (
                "pipelines/payments/transform/dbt_project.yml",
                "name: payments\nmodel-paths: ['sql']\n",
            ),
            (
                "pipelines/payments/transform/sql/fct_payments.sql",
                "select 1 as id\n",
            ),
            (
                "pipelines/payments/reports/validation-report.md",
                "# Validation\n\nRow counts match the ledger.\n",
            ),
        ],
    );
    Test::new()
        .current_dir(r)
        .arg("init")
        .stdout_has(
            "pipelines/orders/hatrack.toml: 5 input(s) bound for stage deployment, 0 to fill in",
        )
        .stdout_has(
            "pipelines/payments/hatrack.toml: 5 input(s) bound for stage deployment, 0 to fill in",
        )
        .stdout_has("hatrack-workspaces.txt: 2 workspaces, one per pipeline")
        .run();
    assert!(!r.join("hatrack.toml").exists(), "the root is no workspace");
    let manifest = std::fs::read_to_string(r.join("hatrack-workspaces.txt")).unwrap();
    let listed: Vec<&str> = manifest.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(listed, ["pipelines/orders", "pipelines/payments"]);
    // As `hatrack run --manifest` reads it: each line a workspace holding its hatrack.toml.
    let members = hatrack::batch::read_manifest(&r.join("hatrack-workspaces.txt")).unwrap();
    assert_eq!(members.len(), 2);
    assert!(members.iter().all(|m| m.join("hatrack.toml").is_file()));

    let orders = r.join("pipelines/orders");
    let text = std::fs::read_to_string(orders.join("hatrack.toml")).unwrap();
    assert!(
        text.contains("# This repository holds 2 pipelines"),
        "{text}"
    );
    assert_eq!(
        line(&text, "extraction jobs"),
        r#""extraction jobs" = ["airflow/dags/**/*.py"]"#
    );
    let all = render_every_step(&orders);
    assert!(shown(&all, "dbt/models/fct_orders.sql"));
    assert!(
        !all.contains("fct_payments"),
        "a pipeline saw the other's files"
    );

    let payments = r.join("pipelines/payments");
    let text = std::fs::read_to_string(payments.join("hatrack.toml")).unwrap();
    assert_eq!(
        line(&text, "transformation code"),
        r#""transformation code" = ["transform/sql/**/*.sql", "transform/dbt_project.yml"]"#
    );
    render_every_step(&payments);

    // Nothing is overwritten without --force: not a workspace's file, not the manifest.
    Test::new()
        .current_dir(r)
        .arg("init")
        .status(2)
        .stderr_has("already exists")
        .run();
    let before = std::fs::read_to_string(payments.join("hatrack.toml")).unwrap();
    Test::new().current_dir(r).args(["init", "--force"]).run();
    assert_eq!(
        std::fs::read_to_string(payments.join("hatrack.toml")).unwrap(),
        before,
        "init is deterministic"
    );
}

#[test]
fn dagster_next_to_dbt_binds_the_dagster_code_as_the_jobs() {
    let repo = tempfile::tempdir().unwrap();
    let r = repo.path();
    write(
        r,
        &[
            ("README.md", "# Events\n\nIntent: product events modelled daily; SLA: marts by 08:00 UTC.\n"),
            ("pyproject.toml", "[project]\nname = \"events\"\n\n[tool.dagster]\nmodule_name = \"orchestration.definitions\"\n"),
            ("orchestration/__init__.py", ""),
            ("orchestration/definitions.py", "from dagster import Definitions\n\ndefs = Definitions(assets=[])\n"),
            ("orchestration/assets/events_dbt.py", "from dagster_dbt import dbt_assets\n"),
            ("orchestration/assets/ingest.py", "from dagster import asset\n\n@asset\ndef raw_events():\n    pass\n"),
            ("orchestration/resources.py", "WAREHOUSE = 'duckdb'\n"),
            ("transform/dbt_project.yml", "name: events\n"),
            ("transform/models/stg_events.sql", "select * from raw_events\n"),
            ("transform/models/schema.yml", SCHEMA_WITH_TESTS),
            ("transform/target/run_results.json", "{\"results\": []}\n"),
            ("Dockerfile", "FROM python:3.12-slim\n"),
            ("docker-compose.yml", "services:\n  dagster:\n    build: .\n"),
            ("docs/runbook.md", "# Runbook\n\nRe-materialise the failed partition.\n"),
        ],
    );
    let text = init_all_bound(r, r);
    assert_eq!(
        line(&text, "extraction jobs"),
        r#""extraction jobs" = ["orchestration/**/*.py"]"#
    );
    assert_eq!(
        line(&text, "validation report"),
        r#""validation report" = ["transform/target/run_results.json", "transform/models/schema.yml"]"#
    );
    assert_eq!(
        line(&text, "infrastructure requirements from the intent"),
        r#""infrastructure requirements from the intent" = ["README.md", "Dockerfile", "docker-compose.yml", "pyproject.toml"]"#
    );
    let all = render_every_step(r);
    assert!(shown(&all, "orchestration/resources.py"));
    assert!(shown(&all, "docs/runbook.md"));
}

#[test]
fn plain_airflow_with_plugins_follows_airflow_cfg_and_airflowignore() {
    let repo = tempfile::tempdir().unwrap();
    let r = repo.path();
    write(
        r,
        &[
            ("airflow.cfg", "[core]\ndags_folder = /opt/airflow/dags\nload_examples = False\n"),
            ("docker-compose.yaml", "x-airflow-common: &common\n  image: apache/airflow:2.10.3\nservices:\n  airflow-scheduler:\n    <<: *common\n"),
            ("README.md", "# Customer ETL\n\nNightly customer and order loads; done by 05:00 UTC.\n"),
            ("dags/.airflowignore", "legacy/\n"),
            ("dags/etl_customers.py", "from airflow import DAG\nfrom operators.s3_to_postgres import S3ToPostgresOperator\n"),
            ("dags/etl_orders.py", "from airflow import DAG\n"),
            ("dags/sql/upsert_orders.sql", "insert into orders select * from staging.orders on conflict do nothing\n"),
            ("dags/legacy/old_etl.py", "print('retired')\n"),
            ("plugins/operators/s3_to_postgres.py", "from airflow.models import BaseOperator\n"),
            ("plugins/hooks/crm_hook.py", "from airflow.hooks.base import BaseHook\n"),
            ("great_expectations/expectations/customers_suite.json", "{\"expectation_suite_name\": \"customers\"}\n"),
            ("docs/oncall.md", "# Customer ETL\n\nWho to page and when.\n"),
            ("tests/test_dag_integrity.py", "def test_dags_load():\n    pass\n"),
        ],
    );
    let text = init_all_bound(r, r);
    assert_eq!(
        line(&text, "extraction jobs"),
        r#""extraction jobs" = ["dags/etl_customers.py", "dags/etl_orders.py", "plugins/**/*.py"]"#
    );
    assert_eq!(
        line(&text, "transformation code"),
        r#""transformation code" = ["dags/**/*.sql"]"#
    );
    assert_eq!(
        line(&text, "validation report"),
        r#""validation report" = ["**/great_expectations/expectations/**"]"#
    );
    assert_eq!(
        line(&text, "sla requirements from discovery"),
        r#""sla requirements from discovery" = ["README.md", "docs/oncall.md"]"#
    );
    let all = render_every_step(r);
    assert!(shown(&all, "plugins/operators/s3_to_postgres.py"));
    assert!(shown(&all, "docker-compose.yaml"));
    assert!(!all.contains("old_etl"), "an ignored DAG was bound");
}

#[test]
fn kubernetes_and_helm_are_the_infrastructure_and_secret_files_stay_out() {
    let repo = tempfile::tempdir().unwrap();
    let r = repo.path();
    write(
        r,
        &[
            (
                "README.md",
                "# Clickstream\n\nIntent: sessions modelled every 15 minutes on the cluster.\n",
            ),
            ("jobs/extract_events.py", "def main():\n    pass\n"),
            ("dbt_project.yml", "name: clickstream\n"),
            ("models/sessions.sql", "select 1 as session_id\n"),
            ("models/schema.yml", SCHEMA_WITH_TESTS),
            ("k8s/base/kustomization.yaml", "resources: [cronjob.yaml]\n"),
            (
                "k8s/base/cronjob.yaml",
                "apiVersion: batch/v1\nkind: CronJob\nmetadata:\n  name: dbt-run\n",
            ),
            (
                "k8s/overlays/prod/kustomization.yaml",
                "resources: [../../base]\npatches: [patch.yaml]\n",
            ),
            (
                "k8s/overlays/prod/patch.yaml",
                "apiVersion: batch/v1\nkind: CronJob\nmetadata:\n  name: dbt-run\n",
            ),
            (
                "charts/clickstream/Chart.yaml",
                "apiVersion: v2\nname: clickstream\nversion: 0.3.0\n",
            ),
            (
                "charts/clickstream/values.yaml",
                "schedule: '*/15 * * * *'\n",
            ),
            (
                "charts/clickstream/values-prod.yaml",
                "resources:\n  limits:\n    memory: 2Gi\n",
            ),
            (
                "charts/clickstream/templates/cronjob.yaml",
                "apiVersion: batch/v1\nkind: CronJob\n",
            ),
            (
                "terraform/main.tf",
                "resource \"google_bigquery_dataset\" \"clickstream\" {}\n",
            ),
            (
                "terraform/prod.tfvars",
                "db_password = \"hunter2-not-for-prompts\"\n",
            ),
            (".github/workflows/deploy.yml", "on: push\n"),
            ("deploy/.env", "WAREHOUSE_PASSWORD=env-not-for-prompts\n"),
            (
                "deploy/README.md",
                "# Deploying\n\nhelm upgrade --install clickstream charts/clickstream\n",
            ),
            (
                "runbooks/clickstream.md",
                "# Clickstream\n\nIf the CronJob fails twice, page #platform.\n",
            ),
        ],
    );
    let text = init_all_bound(r, r);
    assert_eq!(
        line(&text, "infrastructure requirements from the intent"),
        r#""infrastructure requirements from the intent" = ["README.md", "deploy/README.md", "charts/clickstream/Chart.yaml", "charts/clickstream/values*.yaml", "charts/clickstream/templates/**", "k8s/base/**/*.yaml", "k8s/overlays/prod/**/*.yaml", "terraform/**/*.tf", ".github/workflows/**", "runbooks/**"]"#
    );
    let all = render_every_step(r);
    assert!(shown(&all, "k8s/overlays/prod/patch.yaml"));
    assert!(shown(&all, "charts/clickstream/templates/cronjob.yaml"));
    assert!(
        !all.contains("not-for-prompts"),
        "a tfvars or .env file was bound"
    );
}

#[test]
fn several_pipelines_sharing_one_dag_folder_stay_one_workspace_with_a_question() {
    let repo = tempfile::tempdir().unwrap();
    let r = repo.path();
    write(
        r,
        &[
            ("README.md", "# Analytics\n"),
            ("dags/finance.py", "from airflow import DAG\n"),
            ("dbt/finance/dbt_project.yml", "name: finance\n"),
            ("dbt/finance/models/a.sql", "select 1\n"),
            ("dbt/marketing/dbt_project.yml", "name: marketing\n"),
            ("dbt/marketing/models/b.sql", "select 1\n"),
        ],
    );
    Test::new()
        .current_dir(r)
        .arg("init")
        .stdout_has("QUESTION: this repository seems to hold several pipelines (dbt project dbt/finance; dbt project dbt/marketing; DAG folder dags)")
        .run();
    let text = std::fs::read_to_string(r.join("hatrack.toml")).unwrap();
    assert!(text.contains("# QUESTION: this repository"), "{text}");
    assert_eq!(
        line(&text, "transformation code"),
        r#""transformation code" = ["dbt/finance/models/**/*.sql", "dbt/finance/dbt_project.yml", "dbt/marketing/models/**/*.sql", "dbt/marketing/dbt_project.yml"]"#
    );
    assert!(!r.join("hatrack-workspaces.txt").exists());
}

/// What nothing fits: the TODO line lists the closest files seen, and `render` says the item
/// is still unbound and what to write — never a path error about the placeholder.
#[test]
fn a_todo_names_its_closest_candidates_and_render_says_the_item_is_unbound() {
    let repo = tempfile::tempdir().unwrap();
    let r = repo.path();
    write(
        r,
        &[
            ("README.md", "# Pipeline\n"),
            ("dags/a.py", "pass\n"),
            ("models/a.sql", "select 1\n"),
            (
                "tests/test_quality_checks.py",
                "def test_rows():\n    pass\n",
            ),
        ],
    );
    Test::new()
        .current_dir(r)
        .arg("init")
        .stdout_has("TODO: \"validation report\" (read by pipeline-engineer, sre); closest seen: tests/test_quality_checks.py")
        .run();
    let text = std::fs::read_to_string(r.join("hatrack.toml")).unwrap();
    assert!(
        text.contains("#   closest seen: \"tests/test_quality_checks.py\""),
        "{text}"
    );
    let out = Test::new()
        .current_dir(r)
        .args(["render", "sre"])
        .status(2)
        .stderr_has("Reads item \"validation report\" is not bound yet")
        .stderr_has("\"validation report\" = \"path/to/file\"")
        .run();
    assert!(!out.stderr.contains("matches no file"), "{}", out.stderr);
}

#[test]
fn prefect_flows_are_the_jobs_and_prefect_yaml_the_deployment() {
    let repo = tempfile::tempdir().unwrap();
    let r = repo.path();
    write(
        r,
        &[
            ("README.md", "# Shipments\n\nIntent: shipments loaded every hour; SLA 20 minutes.\n"),
            ("prefect.yaml", "deployments:\n  - name: shipments-hourly\n    entrypoint: flows/shipments.py:load\n    schedule: {cron: '0 * * * *'}\n"),
            ("flows/shipments.py", "from prefect import flow, task\n\n@flow\ndef load():\n    pass\n"),
            ("flows/carriers.py", "import requests\n"),
            ("dbt_project.yml", "name: shipments\nmodel-paths: [marts]\n"),
            ("marts/fct_shipments.sql", "select 1 as id\n"),
            ("marts/schema.yml", SCHEMA_WITH_TESTS),
            ("docs/incident-response.md", "# Shipments\n\nRetry the flow run, then page #logistics-data.\n"),
        ],
    );
    let text = init_all_bound(r, r);
    assert_eq!(
        line(&text, "extraction jobs"),
        r#""extraction jobs" = ["flows/**/*.py"]"#
    );
    assert_eq!(
        line(&text, "infrastructure requirements from the intent"),
        r#""infrastructure requirements from the intent" = ["README.md", "prefect.yaml"]"#
    );
    assert_eq!(
        line(&text, "sla requirements from discovery"),
        r#""sla requirements from discovery" = ["README.md", "docs/incident-response.md"]"#
    );
    render_every_step(r);
}
