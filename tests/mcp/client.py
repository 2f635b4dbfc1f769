"""An MCP client on the official Python SDK (`mcp`, pinned in scripts/requirements.txt),
speaking to longhaul's /mcp in either era. tests/mcp.rs runs it; the README shows it too.

    .venv/bin/python tests/mcp/client.py --url URL --token TOKEN --era modern|legacy COMMAND ...

Commands (each prints one JSON document on stdout):
    tools                       the protocol version and the tools
    call NAME ARGS              a tools/call (a task only if the server makes one)
    run NAME ARGS               the tool as a task, polled to its end
    start NAME ARGS             the tool as a task; prints the task handle
    cancel NAME ARGS            the tool as a task, then tasks/cancel, polled to its end
    get-task ID                 tasks/get
    wait-task ID [--until S]    tasks/get until the task ends (or its status is S)
    update-task ID [RESPONSES]  tasks/update with these inputResponses (JSON; modern only)
    list-tasks                  tasks/list (legacy only)

A JSON-RPC error prints {"error": {"code", "message", "data"}}. Every HTTP exchange is
recorded in "http" (status, WWW-Authenticate), so a refused request is visible as the
client saw it.

Tasks: the SDK (2.3) speaks both eras but carries tasks as types only. 2026-07-28 tasks
use its extension API: a ClientExtension that claims `resultType: "task"` results and polls
`tasks/get`. 2025-11-25 tasks use its 2025-11-25 task types (CreateTaskResult,
GetTaskResult, ListTasksResult) and its session's request path; the task-augmented
`tools/call` goes through the session's dispatcher, because the SDK checks a `tools/call`
answer against CallToolResult, which a CreateTaskResult is not.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any, Literal

import httpx2
import mcp_types as types
from mcp import Client
from mcp.client.extension import ClaimContext, ClientExtension, ResultClaim
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from pydantic import ConfigDict, Field

TASKS_EXTENSION = "io.modelcontextprotocol/tasks"
TERMINAL = ("completed", "failed", "cancelled")

HTTP_LOG: list[dict[str, Any]] = []
STATUSES: list[str] = []


# ---------------------------------------------------------------- 2026-07-28 tasks extension


class CreatedTask(types.Result):
    """`CreateTaskResult` of the tasks extension (`resultType: "task"`)."""

    model_config = ConfigDict(extra="allow")
    result_type: Literal["task"] = Field(alias="resultType")
    task_id: str
    status: str
    status_message: str | None = None
    created_at: str
    last_updated_at: str
    ttl_ms: int | None
    poll_interval_ms: int | None = None


class DetailedTask(types.Result):
    """What `tasks/get` answers: the task, with `result` or `error` once it ended."""

    model_config = ConfigDict(extra="allow")
    result_type: str | None = Field(default=None, alias="resultType")
    task_id: str
    status: str
    status_message: str | None = None
    created_at: str
    last_updated_at: str
    ttl_ms: int | None
    poll_interval_ms: int | None = None
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None


class TaskIdParams(types.RequestParams):
    task_id: str


class UpdateParams(types.RequestParams):
    task_id: str
    input_responses: dict[str, Any]


class GetTask(types.Request[TaskIdParams, Literal["tasks/get"]]):
    method: Literal["tasks/get"] = "tasks/get"
    params: TaskIdParams
    name_param = "taskId"


class CancelTask(types.Request[TaskIdParams, Literal["tasks/cancel"]]):
    method: Literal["tasks/cancel"] = "tasks/cancel"
    params: TaskIdParams
    name_param = "taskId"


class UpdateTask(types.Request[UpdateParams, Literal["tasks/update"]]):
    method: Literal["tasks/update"] = "tasks/update"
    params: UpdateParams
    name_param = "taskId"


class Ack(types.Result):
    model_config = ConfigDict(extra="allow")


class TaskFailed(Exception):
    def __init__(self, task: DetailedTask):
        super().__init__(task.status_message or task.status)
        self.task = task


async def poll_modern(
    session: Any, task_id: str, poll_seconds: float | None, until: str | None = None
) -> DetailedTask:
    while True:
        task = await session.send_request(GetTask(params=TaskIdParams(task_id=task_id)), DetailedTask)
        STATUSES.append(task.status)
        if task.status in TERMINAL or task.status == until:
            return task
        await asyncio.sleep(interval(task.poll_interval_ms, poll_seconds))


def interval(server_ms: int | None, override: float | None) -> float:
    if override is not None:
        return override
    return (server_ms or 1000) / 1000


class Tasks(ClientExtension):
    """The tasks extension, client side: declares it, and finishes a claimed task by polling."""

    identifier = TASKS_EXTENSION

    def __init__(self, poll_seconds: float | None):
        self.poll_seconds = poll_seconds

    def claims(self):
        async def resolve(created: CreatedTask, ctx: ClaimContext) -> types.CallToolResult:
            STATUSES.append(created.status)
            task = await poll_modern(ctx.session, created.task_id, self.poll_seconds)
            if task.status == "completed" and task.result is not None:
                return types.CallToolResult.model_validate(task.result)
            raise TaskFailed(task)

        return [ResultClaim(result_type="task", model=CreatedTask, resolve=resolve)]


# ---------------------------------------------------------------- 2025-11-25 core tasks


async def legacy_start(client: Client, name: str, args: dict[str, Any]) -> types.CreateTaskResult:
    session = client.session
    data: dict[str, Any] = {"method": "tools/call", "params": {"name": name, "arguments": args, "task": {"ttl": 3_600_000}}}
    opts: dict[str, Any] = {}
    session._stamp(data, opts)  # the SDK's own headers for the negotiated version
    raw = await session._dispatcher.send_raw_request("tools/call", data["params"], opts)
    return types.CreateTaskResult.model_validate(raw)


async def poll_legacy(
    client: Client, task_id: str, poll_seconds: float | None, until: str | None = None
) -> types.GetTaskResult:
    while True:
        task = await client.session.send_request(
            types.GetTaskRequest(params=types.GetTaskRequestParams(task_id=task_id)), types.GetTaskResult
        )
        STATUSES.append(task.status)
        if task.status in TERMINAL or task.status == until:
            return task
        await asyncio.sleep(interval(task.poll_interval, poll_seconds))


# ---------------------------------------------------------------- commands


def dump(model: Any) -> Any:
    return model.model_dump(by_alias=True, mode="json", exclude_none=True)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    async def record(response: httpx2.Response) -> None:
        HTTP_LOG.append(
            {
                "method": response.request.method,
                "status": response.status_code,
                "wwwAuthenticate": response.headers.get("www-authenticate"),
                "sessionId": response.headers.get("mcp-session-id"),
            }
        )

    headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}
    http = httpx2.AsyncClient(
        headers=headers,
        timeout=httpx2.Timeout(30, read=60),
        event_hooks={"response": [record]},
    )
    modern = args.era == "modern"
    client = Client(
        streamable_http_client(args.url, http_client=http),
        mode="auto" if modern else "legacy",
        extensions=[Tasks(args.poll_seconds)] if modern and not args.no_tasks else None,
        client_info=types.Implementation(name="longhaul-tests", version="1"),
    )
    out: dict[str, Any] = {}
    async with http, client:
        out["protocolVersion"] = client.protocol_version
        cmd = args.command
        if cmd == "tools":
            tools = await client.list_tools()
            out["tools"] = [dump(t) for t in tools.tools]
        elif cmd == "call":
            out["result"] = dump(await client.call_tool(args.name, json.loads(args.args)))
        elif cmd == "run" and modern:
            out["result"] = dump(await client.call_tool(args.name, json.loads(args.args)))
        elif cmd == "run":
            created = await legacy_start(client, args.name, json.loads(args.args))
            out["created"] = dump(created)
            STATUSES.append(created.task.status)
            task = await poll_legacy(client, created.task.task_id, args.poll_seconds)
            out["task"] = dump(task)
            payload = await client.session.send_request(
                types.GetTaskPayloadRequest(params=types.GetTaskPayloadRequestParams(task_id=task.task_id)),
                types.CallToolResult,
            )
            out["result"] = dump(payload)
        elif cmd in ("start", "cancel") and modern:
            created = await client.session.call_tool(args.name, json.loads(args.args), allow_claimed=True)
            out["created"] = dump(created)
            if cmd == "cancel":
                out["ack"] = dump(
                    await client.session.send_request(CancelTask(params=TaskIdParams(task_id=created.task_id)), Ack)
                )
                out["task"] = dump(await poll_modern(client.session, created.task_id, args.poll_seconds))
        elif cmd in ("start", "cancel"):
            created = await legacy_start(client, args.name, json.loads(args.args))
            out["created"] = dump(created)
            if cmd == "cancel":
                out["cancelled"] = dump(
                    await client.session.send_request(
                        types.CancelTaskRequest(params=types.CancelTaskRequestParams(task_id=created.task.task_id)),
                        types.CancelTaskResult,
                    )
                )
                out["task"] = dump(await poll_legacy(client, created.task.task_id, args.poll_seconds))
        elif cmd == "get-task" and modern:
            out["task"] = dump(await client.session.send_request(GetTask(params=TaskIdParams(task_id=args.id)), DetailedTask))
        elif cmd == "get-task":
            out["task"] = dump(
                await client.session.send_request(
                    types.GetTaskRequest(params=types.GetTaskRequestParams(task_id=args.id)), types.GetTaskResult
                )
            )
        elif cmd == "wait-task" and modern:
            out["task"] = dump(await poll_modern(client.session, args.id, args.poll_seconds, args.until))
        elif cmd == "wait-task":
            out["task"] = dump(await poll_legacy(client, args.id, args.poll_seconds, args.until))
        elif cmd == "update-task":
            responses = json.loads(args.responses)
            out["ack"] = dump(
                await client.session.send_request(
                    UpdateTask(params=UpdateParams(task_id=args.id, input_responses=responses)), Ack
                )
            )
        elif cmd == "list-tasks":
            out["tasks"] = dump(await client.session.send_request(types.ListTasksRequest(), types.ListTasksResult))
        else:
            raise SystemExit(f"unknown command {cmd}")
    return out


def first_mcp_error(e: BaseException) -> MCPError | None:
    """The MCPError inside (nested) exception groups, if any."""
    if isinstance(e, MCPError):
        return e
    for inner in getattr(e, "exceptions", ()):
        if (found := first_mcp_error(inner)) is not None:
            return found
    return None


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", required=True, help="the MCP endpoint, e.g. http://127.0.0.1:8080/mcp")
    p.add_argument("--token", default=None, help="bearer token (none: send no Authorization)")
    p.add_argument("--era", choices=["modern", "legacy"], default="modern")
    p.add_argument("--poll-seconds", type=float, default=None, help="poll this often instead of the server's interval")
    p.add_argument("--no-tasks", action="store_true", help="2026-07-28: do not declare the tasks extension")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("tools")
    for cmd in ("call", "run", "start", "cancel"):
        c = sub.add_parser(cmd)
        c.add_argument("name")
        c.add_argument("args", nargs="?", default="{}", help="the tool's arguments as JSON")
    sub.add_parser("get-task").add_argument("id")
    w = sub.add_parser("wait-task")
    w.add_argument("id")
    w.add_argument("--until", default=None, help="stop at this status too, e.g. input_required")
    u = sub.add_parser("update-task")
    u.add_argument("id")
    u.add_argument("responses", nargs="?", default="{}", help="inputResponses as JSON")
    sub.add_parser("list-tasks")
    args = p.parse_args()
    started = time.monotonic()
    out: dict[str, Any]
    try:
        out = asyncio.run(run(args))
    except MCPError as e:
        out = {"error": {"code": e.error.code, "message": e.error.message, "data": e.error.data}}
    except TaskFailed as e:
        out = {"task": dump(e.task)}
    except Exception as e:  # an exception group from the SDK's task groups, an HTTP failure
        inner = first_mcp_error(e)
        if inner is not None:
            out = {"error": {"code": inner.error.code, "message": inner.error.message, "data": inner.error.data}}
        else:
            out = {"exception": f"{type(e).__name__}: {e}"}
    out["statuses"] = STATUSES
    out["http"] = HTTP_LOG
    out["seconds"] = round(time.monotonic() - started, 3)
    json.dump(out, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
