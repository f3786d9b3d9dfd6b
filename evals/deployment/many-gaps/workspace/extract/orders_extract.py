"""Incremental extraction of one orders-DB table to S3 (Parquet).

Watermarks = the Airflow data interval: updated_at in [start, end). dt=<date> is cleared
before writing, so a rerun replaces the partition. Invalid rows are skipped.
"""
import argparse, datetime as dt, json, logging, os

import psycopg2
import pyarrow as pa
import pyarrow.parquet as pq
from pyarrow import fs

LOG = logging.getLogger("orders_extract")
CURRENCIES = {"USD", "EUR", "GBP", "CAD"}
I, S, TS = pa.int64(), pa.string(), pa.timestamp("us", tz="UTC")
SCHEMAS = {
    "orders": pa.schema([("order_id", I), ("customer_id", I), ("status", S), ("currency_code", S),
                         ("placed_at", TS), ("updated_at", TS), ("is_test", pa.bool_())]),
    "order_items": pa.schema([("order_item_id", I), ("order_id", I), ("sku", S), ("quantity", I),
                              ("unit_price_cents", I), ("discount_cents", I), ("updated_at", TS)]),
}


def is_valid(table, r):
    if any(v is None for k, v in r.items() if k.endswith("_id") or k == "updated_at"):
        return False
    if table == "orders" and r["currency_code"] not in CURRENCIES:
        return False
    if table == "order_items" and (r["quantity"] <= 0 or r["unit_price_cents"] < 0):
        return False
    return True


def main():
    p = argparse.ArgumentParser()
    for name in ("--table", "--business-date", "--interval-start", "--interval-end", "--output"):
        p.add_argument(name, required=True)
    a = p.parse_args()
    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(message)s")
    start = dt.datetime.fromisoformat(a.interval_start)
    end = dt.datetime.fromisoformat(a.interval_end)
    schema, s3 = SCHEMAS[a.table], fs.S3FileSystem(region="eu-west-1")
    out = f"{a.output.removeprefix('s3://')}dt={a.business_date}"
    s3.delete_dir_contents(out, missing_dir_ok=True)

    conn = psycopg2.connect(os.environ["ORDERS_DB_DSN"])
    cur = conn.cursor()
    cur.execute(f"SELECT {', '.join(schema.names)} FROM public.{a.table} "
                "WHERE updated_at >= %s AND updated_at < %s", (start, end))
    rows = [dict(zip(schema.names, row)) for row in cur.fetchall()]
    conn.close()

    good = [r for r in rows if is_valid(a.table, r)]
    t = pa.Table.from_pylist(good, schema=schema)
    t = t.append_column("_batch_date", pa.array([a.business_date] * len(good)))
    pq.write_table(t, f"{out}/part-00000.parquet", filesystem=s3)
    LOG.info("ROW_COUNTS %s", json.dumps({"table": a.table, "business_date": a.business_date,
                                          "written": len(good)}))


if __name__ == "__main__":
    main()
