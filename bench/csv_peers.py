"""Peers of `longhaul-bench csv`: the same GROUP BY over the same CSV file with DuckDB and
with pandas, and the cross-check of longhaul's answer. argv: CSV_PATH RUNS [REPORT_CSV].

Prints {"duckdb": [seconds...], "pandas": [seconds...]}, and with REPORT_CSV also "groups"
and "count" (DuckDB's), "checked_groups", "mismatch_count" and the first "mismatches". The
timed queries are what a user would type.
The check, untimed, asks DuckDB again with `amount` read as DECIMAL(18,2), so its sums,
minima and maxima are exact, and compares every group of longhaul's report.csv with it:
counts, sums, minima and maxima exactly, means to 1e-12 relative (DuckDB's avg of a
decimal is a double)."""

import csv
import io
import json
import sys
import time
from decimal import Decimal

import duckdb
import pandas as pd

path, runs = sys.argv[1], int(sys.argv[2])
report_csv = sys.argv[3] if len(sys.argv) > 3 else None
out = {"duckdb": [], "pandas": []}
query = f"""
    SELECT region, product, channel, count(*) AS n, sum(amount) AS s, avg(amount) AS m,
           min(amount) AS lo, max(amount) AS hi
    FROM read_csv('{path}', header = true)
    GROUP BY region, product, channel
"""
# Untimed warm-up of both libraries (each round is a fresh process): the first query in a
# process pays for loading code that a user's session would have loaded once.
warm = duckdb.connect()
warm.execute("SET enable_progress_bar = false")
warm.execute("SELECT count(*) FROM range(1000)").fetchall()
warm.close()
pd.read_csv(io.StringIO("a,b\n1,2\n")).groupby("a")["b"].agg(["count", "sum"])
for _ in range(runs):
    t = time.monotonic()
    # No progress bar: it goes to stdout, which carries the JSON answer.
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    rows = con.execute(query).fetchall()
    out["duckdb"].append(time.monotonic() - t)
    con.close()
for _ in range(runs):
    t = time.monotonic()
    df = pd.read_csv(path, usecols=["region", "product", "channel", "amount"])
    g = df.groupby(["region", "product", "channel"])["amount"].agg(["count", "sum", "mean", "min", "max"])
    out["pandas"].append(time.monotonic() - t)
    del df

if report_csv:
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    exact = con.execute(f"""
        SELECT region, product, channel, count(*), sum(amount)::VARCHAR, avg(amount)::DOUBLE,
               min(amount)::VARCHAR, max(amount)::VARCHAR
        FROM read_csv('{path}', header = true, types = {{'amount': 'DECIMAL(18,2)'}})
        GROUP BY ALL
    """).fetchall()
    con.close()
    out["groups"] = len(exact)
    out["count"] = sum(r[3] for r in exact)
    want = {(r[0], r[1], r[2]): r[3:] for r in exact}
    mismatches, checked = [], 0
    with open(report_csv, newline="") as f:
        for row in csv.DictReader(f):
            key = (row["region"], row["product"], row["channel"])
            if key not in want:
                mismatches.append({"group": key, "longhaul": row, "duckdb": None})
                continue
            n, s, m, lo, hi = want.pop(key)
            ok = (
                int(row["count"]) == n
                and Decimal(row["sum_amount"]) == Decimal(s)
                and Decimal(row["min_amount"]) == Decimal(lo)
                and Decimal(row["max_amount"]) == Decimal(hi)
                and abs(float(row["mean_amount"]) - m) <= 1e-12 * max(1.0, abs(m))
            )
            checked += 1
            if not ok:
                mismatches.append({"group": key, "longhaul": row, "duckdb": [n, s, m, lo, hi]})
    mismatches += [{"group": k, "longhaul": None, "duckdb": list(v)} for k, v in want.items()]
    out["checked_groups"] = checked
    out["mismatches"] = mismatches[:5]
    out["mismatch_count"] = len(mismatches)
print(json.dumps(out))
