"""The peer of `longhaul-bench engine`: moto's Step Functions executor (moto[server] 5.2.5,
in .venv) running the same definitions, in process. Prints one JSON object."""

import json
import sys
import time

import boto3
from moto import mock_aws


def chain(n):
    states = {}
    for i in range(n):
        s = {"Type": "Pass"}
        if i + 1 < n:
            s["Next"] = f"P{i + 1}"
        else:
            s["End"] = True
        states[f"P{i}"] = s
    return {"StartAt": "P0", "States": states}


def wait_all(sfn, arns, timeout):
    deadline = time.monotonic() + timeout
    pending = set(arns)
    while pending:
        for arn in list(pending):
            st = sfn.describe_execution(executionArn=arn)["status"]
            if st != "RUNNING":
                if st != "SUCCEEDED":
                    raise SystemExit(f"execution {arn} ended {st}")
                pending.discard(arn)
        if time.monotonic() > deadline:
            raise SystemExit(f"{len(pending)} executions still running after {timeout} s")
        time.sleep(0.01)


def main():
    items, n, executions, runs = (int(a) for a in sys.argv[1:5])
    role = "arn:aws:iam::123456789012:role/bench"
    results = {"map": [], "concurrent": []}
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        sfn = boto3.client("stepfunctions", region_name="us-east-1")
        m = {"StartAt": "M", "States": {"M": {"Type": "Map", "ItemsPath": "$.xs",
             "ItemProcessor": chain(n), "End": True}}}
        map_arn = sfn.create_state_machine(name="map", definition=json.dumps(m), roleArn=role)["stateMachineArn"]
        one_arn = sfn.create_state_machine(name="chain", definition=json.dumps(chain(n)), roleArn=role)["stateMachineArn"]
        for run in range(runs):
            t = time.monotonic()
            e = sfn.start_execution(stateMachineArn=map_arn, name=f"map-{run}", input=json.dumps({"xs": list(range(items))}))
            wait_all(sfn, [e["executionArn"]], 600)
            results["map"].append((items * n + 1) / (time.monotonic() - t))
            t = time.monotonic()
            arns = [sfn.start_execution(stateMachineArn=one_arn, name=f"c-{run}-{i}", input=json.dumps({"i": i}))["executionArn"]
                    for i in range(executions)]
            wait_all(sfn, arns, 600)
            results["concurrent"].append(executions * n / (time.monotonic() - t))
    print(json.dumps(results))


main()
