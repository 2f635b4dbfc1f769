"""Peers of `longhaul bench csv`: the same GROUP BY over the same CSV file with DuckDB and
with pandas. argv: CSV_PATH RUNS. Prints {"duckdb": [seconds...], "pandas": [seconds...],
"groups": {...}} where groups is DuckDB's answer (count, sum of amount per region/product/
channel) so the caller can check all three agree."""

import json
import sys
import time

import duckdb
import pandas as pd

path, runs = sys.argv[1], int(sys.argv[2])
out = {"duckdb": [], "pandas": []}
query = f"""
    SELECT region, product, channel, count(*) AS n, sum(amount) AS s, avg(amount) AS m,
           min(amount) AS lo, max(amount) AS hi
    FROM read_csv('{path}', header = true)
    GROUP BY region, product, channel
"""
for _ in range(runs):
    t = time.monotonic()
    # No progress bar: it goes to stdout, which carries the JSON answer.
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    rows = con.execute(query).fetchall()
    out["duckdb"].append(time.monotonic() - t)
    con.close()
out["groups"] = len(rows)
out["count"] = sum(r[3] for r in rows)
for _ in range(runs):
    t = time.monotonic()
    df = pd.read_csv(path, usecols=["region", "product", "channel", "amount"])
    g = df.groupby(["region", "product", "channel"])["amount"].agg(["count", "sum", "mean", "min", "max"])
    out["pandas"].append(time.monotonic() - t)
    del df
out["pandas_groups"] = len(g)
print(json.dumps(out))
