"""A/B of getJob between `longhaul` binaries: how BENCHMARKS.md measures what one change to
getJob's path bought. Starts one `longhaul serve` per binary (each its own data dir) and the
bare axum peer (`longhaul-bench bare-server`), makes a RUNNING demo job on each server, then
loads them in turn with wrk, ROUNDS times (the order rotates every round), SECONDS each, so
the machine's load falls on all of them alike. Prints each server's min/median/max req/s and
its median ratio to the bare peer measured in the same round.

    python3 bench/http_ab.py ROUNDS SECONDS BIN [BIN...]

A BIN may carry `#NAME=VALUE` suffixes: environment for that server (`#LONGHAUL_LOG=warn`).
wrk runs as `wrk -t2 -c64 -dSECONDS` (install it with `apt-get install -y wrk`; `longhaul-bench
http` does so itself). The bare peer is target/release/longhaul-bench unless AB_BENCH names
another. Uses only the standard library.
"""

import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

rounds, seconds, bins = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
bench = os.environ.get("AB_BENCH", os.path.join(root, "target/release/longhaul-bench"))
tmp = tempfile.mkdtemp(prefix="http-ab-")


def start(args, cwd, env=None):
    """Starts a server; returns (process, url, token) once it listens."""
    p = subprocess.Popen(args, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                         text=True, env=dict(os.environ, **(env or {})))
    token = ""
    for line in p.stdout:
        if line.startswith("Created a token"):
            token = p.stdout.readline().strip()
        elif line.startswith("longhaul listening on "):
            return p, line.split()[-1], token
    sys.exit(f"{args} did not start")


def call(method, url, token, body=None):
    req = urllib.request.Request(url, method=method, data=body and json.dumps(body).encode(),
                                 headers={"Authorization": f"Bearer {token}",
                                          "Content-Type": "application/json"})
    with urllib.request.urlopen(req) as r:
        return json.load(r)


def running_job(url, token):
    job = call("POST", f"{url}/jobs", token, {"type": "demo", "input": {"steps": 100, "stepSeconds": 900}})
    for _ in range(100):
        v = call("GET", f"{url}/jobs/{job['jobId']}?waitSeconds=1", token)
        if v["status"] == "RUNNING":
            return job["jobId"]
    sys.exit(f"job {job['jobId']} did not start running")


def wrk(url, token, secs):
    script = os.path.join(tmp, "get.lua")
    with open(script, "w") as f:
        f.write(f'wrk.headers["Authorization"] = "Bearer {token}"\n')
    out = subprocess.run(["wrk", "-t2", "-c64", f"-d{secs}s", "-s", script, url],
                         capture_output=True, text=True, check=True).stdout
    if "Non-2xx" in out or "Socket errors" in out:
        sys.exit(f"errors: {out}")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))


targets = []
for i, spec in enumerate(bins):
    b, *envs = spec.split("#")
    d = os.path.join(tmp, f"s{i}")
    os.makedirs(d)
    p, url, token = start([os.path.abspath(b), "serve", "--addr", "127.0.0.1:0", "--data-dir",
                           os.path.join(d, "data")], d, dict(e.split("=", 1) for e in envs))
    targets.append((os.path.basename(spec), p, f"{url}/jobs/{running_job(url, token)}", token))
bare_p, bare_url, _ = start([bench, "bare-server"], tmp)
targets.append(("bare", bare_p, f"{bare_url}/jobs/x", "-"))
for _, _, url, token in targets:
    wrk(url, token, 1)  # warm-up, not counted
rates = {name: [] for name, *_ in targets}
ratios = {name: [] for name, *_ in targets[:-1]}
try:
    for r in range(rounds):
        order = targets[r % len(targets):] + targets[:r % len(targets)]
        got = {name: wrk(url, token, seconds) for name, _, url, token in order}
        for name, v in got.items():
            rates[name].append(v)
            if name != "bare":
                ratios[name].append(v / got["bare"])
        print(f"round {r}: " + ", ".join(f"{n} {v:.0f}" for n, v in got.items()), file=sys.stderr)
finally:
    for _, p, *_ in targets:
        p.kill()
print(f"wrk -t2 -c64 -d{seconds}s, {rounds} rounds, req/s min / median / max, ratio to bare (median of rounds):")
for name, v in rates.items():
    ratio = f"  {statistics.median(ratios[name]):.2f} ({min(ratios[name]):.2f}-{max(ratios[name]):.2f})" if name in ratios else ""
    print(f"{name:28} {min(v):8.0f} {statistics.median(v):8.0f} {max(v):8.0f}{ratio}")
