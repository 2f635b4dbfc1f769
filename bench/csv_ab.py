"""A/B of csv-report between `longhaul` binaries: how BENCHMARKS.md measures what one change
bought. Starts one `longhaul serve` per binary (each its own data dir), uploads the CSV to
each, then runs csv-report jobs on them in turn, ROUNDS times (the order flips every round),
so the machine's load falls on all of them alike. Prints each binary's min/median/max
seconds from startJob to SUCCEEDED, and whether their answers agree.

    python3 bench/csv_ab.py CSV ROUNDS BIN [BIN...]

A BIN may carry `#NAME=VALUE` suffixes: environment for that server (`#MIMALLOC_ALLOW_THP=0`),
or `#CHUNK=BYTES` for the job's chunkBytes. With AB_PHASES=1 each job's history gives the
seconds of its Plan, Map and Merge (medians printed per binary). With AB_PERF=FILE the first
server runs under `perf record -g` for the rounds. A CSV path that does not exist is
written first, AB_MIB MiB (default 1024) of the rows `longhaul-bench csv` generates (the
same generator, the same bytes). Uses only the standard library.
"""

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime

csv_path, rounds, bins = sys.argv[1], int(sys.argv[2]), sys.argv[3:]


def generate(path, mib):
    """longhaul-bench csv's file: bench/src/csv.rs `generate`, line for line."""
    regions = ["north", "south", "east", "west", "centre", "alps", "coast", "lakes", "hills", "plains"]
    channels = ["web", "store", "phone"]
    mask, x, rows, written = (1 << 64) - 1, 0x9E3779B97F4A7C15, 0, 0
    with open(path, "w", buffering=1 << 20) as w:
        w.write("id,region,product,channel,amount,note\n")
        while written < mib << 20:
            x ^= (x << 13) & mask
            x ^= x >> 7
            x ^= (x << 17) & mask
            line = (f"{rows},{regions[x % 10]},p{(x >> 8) % 25:02},{channels[(x >> 16) % 3]},"
                    f"{(x >> 24) % 10000}.{(x >> 40) % 100:02},order {x % 1000000}\n")
            w.write(line)
            written += len(line)
            rows += 1


if not os.path.exists(csv_path):
    generate(csv_path, int(os.environ.get("AB_MIB", "1024")))
size = os.path.getsize(csv_path)


def call(method, url, token, body=None):
    data = json.dumps(body).encode() if body is not None else None
    r = urllib.request.Request(url, data=data, method=method)
    r.add_header("authorization", f"Bearer {token}")
    if data is not None:
        r.add_header("content-type", "application/json")
    with urllib.request.urlopen(r, timeout=3600) as resp:
        return json.loads(resp.read() or b"null")


def start(spec_text, scratch):
    exe, *extra = spec_text.split("#")
    env = dict(e.split("=", 1) for e in extra)
    chunk = env.pop("CHUNK", None)
    p = subprocess.Popen(
        [exe, "serve", "--addr", "127.0.0.1:0", "--data-dir", scratch + "/data",
         "--max-upload-bytes", str(size + 1)],
        cwd=scratch, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        env={**os.environ, "LONGHAUL_LOG": "warn", **env})
    token = url = None
    while url is None:
        line = p.stdout.readline()
        if not line:
            sys.exit(f"{spec_text} did not start")
        if line.startswith("Created a token"):
            token = p.stdout.readline().strip()
        elif line.startswith("longhaul listening on "):
            url = line.split("on ", 1)[1].strip()
    up = call("POST", f"{url}/uploads", token,
              {"name": "ab.csv", "sizeBytes": size, "mimeType": "text/csv"})
    with open(csv_path, "rb") as f:
        r = urllib.request.Request(up["uploadUrl"], data=f, method="PUT")
        r.add_header("content-type", "text/csv")
        r.add_header("content-length", str(size))
        urllib.request.urlopen(r, timeout=3600).read()
    job_input = {"source": {"object": up["object"]}, "groupBy": ["region", "product", "channel"],
                 "metrics": [{"op": "count"}, {"op": "sum", "column": "amount"},
                             {"op": "mean", "column": "amount"}, {"op": "min", "column": "amount"},
                             {"op": "max", "column": "amount"}]}
    if chunk:
        job_input["chunkBytes"] = int(chunk)
    return {"name": spec_text, "process": p, "url": url, "token": token, "input": job_input}


def phases(server, job_id):
    """Seconds of Plan, Map and Merge, from the job's history events."""
    events = call("GET", f"{server['url']}/jobs/{job_id}/history?limit=1000", server["token"])["events"]
    at = lambda e: datetime.fromisoformat(e["timestamp"][:26])
    t0, marks = at(events[0]), {}
    for e in events:
        name = (e.get("details") or {}).get("name", "")
        if e["type"] == "TaskStateExited" and name in ("CsvPlan", "CsvMerge"):
            marks[name] = (at(e) - t0).total_seconds()
        if e["type"] == "MapStateExited":
            marks["Map"] = (at(e) - t0).total_seconds()
    return (marks["CsvPlan"], marks["Map"] - marks["CsvPlan"], marks["CsvMerge"] - marks["Map"])


scratch_dirs = [tempfile.mkdtemp(prefix="csv-ab-") for _ in bins]
servers = [start(b, d) for b, d in zip(bins, scratch_dirs)]
perf = None
if os.environ.get("AB_PERF"):
    perf = subprocess.Popen(["perf", "record", "-F", "999", "-g", "-o", os.environ["AB_PERF"],
                             "-p", str(servers[0]["process"].pid)], stderr=subprocess.DEVNULL)
    time.sleep(0.5)
times = {s["name"]: [] for s in servers}
split = {s["name"]: [] for s in servers}
answers = {}
try:
    for r in range(rounds):
        for s in servers if r % 2 == 0 else servers[::-1]:
            t = time.monotonic()
            job = call("POST", f"{s['url']}/jobs", s["token"], {"type": "csv-report", "input": s["input"]})
            while True:
                v = call("GET", f"{s['url']}/jobs/{job['jobId']}?waitSeconds=20", s["token"])
                if v["status"] == "SUCCEEDED":
                    break
                if v["status"] not in ("QUEUED", "RUNNING"):
                    sys.exit(f"{s['name']}: {v}")
            times[s["name"]].append(time.monotonic() - t)
            answers[s["name"]] = v["result"]["top"]
            if os.environ.get("AB_PHASES"):
                split[s["name"]].append(phases(s, job["jobId"]))
finally:
    if perf:
        perf.send_signal(2)
        perf.wait()
    for s in servers:
        s["process"].kill()
        s["process"].wait()
    for d in scratch_dirs:
        shutil.rmtree(d, ignore_errors=True)
tops = list(answers.values())
print("answers agree:", all(t == tops[0] for t in tops))
for name, ts in times.items():
    line = (f"{name}: min {min(ts):.3f} median {statistics.median(ts):.3f} max {max(ts):.3f}"
            f"  all {' '.join(f'{x:.2f}' for x in ts)}")
    if split[name]:
        med = [statistics.median(p[i] for p in split[name]) for i in range(3)]
        line += f"  phases plan {med[0]:.3f} map {med[1]:.3f} merge {med[2]:.3f}"
    print(line)
