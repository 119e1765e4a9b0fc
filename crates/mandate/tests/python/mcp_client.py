#!/usr/bin/env python3
"""A real MCP client (Python `mcp` package, Streamable HTTP) that runs a script of steps.

    mcp_client.py URL [--header 'Authorization: Bearer X' ...] --script steps.json
    mcp_client.py --stdio 'python3 mcp_fixture_server.py --stdio' --script steps.json

steps.json (or `-` for stdin) is a JSON list of steps, run in order on one session:

    {"op": "list_tools"}
    {"op": "call_tool", "name": "echo", "arguments": {"text": "hi"}}
    {"op": "list_resources"}
    {"op": "list_resource_templates"}
    {"op": "read_resource", "uri": "test://static-text"}
    {"op": "list_prompts"}
    {"op": "get_prompt", "name": "test_prompt_with_arguments", "arguments": {"arg1": "a", "arg2": "b"}}
    {"op": "ping"}
    {"op": "subscribe_resource", "uri": "test://watched-resource"}
    {"op": "unsubscribe_resource", "uri": "test://watched-resource"}
    {"op": "wait_notification", "method": "notifications/resources/updated", "timeout": 10}
    {"op": "sleep", "seconds": 3}

wait_notification answers the first notification with that method the session received
(on any stream, the standalone GET stream included) that no earlier wait answered, as
{"method", "params"}; none within `timeout` seconds is an error.

Output: one JSON line per step on stdout,

    {"step": 0, "op": "list_tools", "result": {...}}   (the MCP result as received: the
                                                        fields the server sent, wire names)
    {"step": 1, "op": "call_tool", "error": {"code": -32010, "message": "...", "data": ...}}

A JSON-RPC error is reported, never raised; a tool result with isError: true is a
result. When the HTTP status of the exchange was not 2xx, the error carries it as
"http_status" (the SDK turns an HTTP error into a JSON-RPC error, e.g. -32603).
An exception that is not a JSON-RPC error is reported as
{"error": {"code": null, "message": "...", "data": {"exception": "TypeName"}}}.

--stdio CMD spawns CMD (split like a shell would, no shell involved) and speaks MCP
over its stdin/stdout instead of HTTP (--header does not apply).

Before the steps the session is initialized (2025-11-25 handshake). If that fails,
one line {"step": "initialize", "op": "initialize", "error": {...}} is printed and
the exit code is 1; otherwise the exit code is 0, whatever the steps returned.
--initialize-line prints the initialize result as a first line as well.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import warnings
from typing import Any

warnings.filterwarnings("ignore", message=r".*deprecated as of 2026-07-28.*")

import shlex
from contextlib import asynccontextmanager

from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError

STEP_TIMEOUT_S = 60.0


def dump(model: Any) -> Any:
    if hasattr(model, "model_dump"):
        # Only the fields that came over the wire, not the SDK models' defaults.
        return model.model_dump(mode="json", by_alias=True, exclude_unset=True)
    return model


def emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


class StatusRecorder:
    """Remembers the HTTP status of the last POST (the request/response exchange)."""

    def __init__(self) -> None:
        self.last: int | None = None

    async def __call__(self, response: Any) -> None:
        if response.request.method == "POST":
            self.last = response.status_code


def error_obj(exc: BaseException, status: StatusRecorder) -> dict[str, Any]:
    while getattr(exc, "exceptions", None):  # an (anyio) exception group: report its first leaf
        exc = exc.exceptions[0]  # type: ignore[attr-defined]
    if isinstance(exc, MCPError):
        err: dict[str, Any] = {"code": exc.code, "message": exc.message, "data": exc.data}
    else:
        err = {"code": None, "message": str(exc) or type(exc).__name__, "data": {"exception": type(exc).__name__}}
    if status.last is not None and not 200 <= status.last < 300:
        err["http_status"] = status.last
    return err


class Notifications:
    """The notifications a session received, in order, for wait_notification."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.taken = 0

    async def __call__(self, message: Any) -> None:
        method = getattr(message, "method", None)
        if isinstance(method, str):
            self.received.append({"method": method, "params": dump(getattr(message, "params", None))})

    async def wait(self, method: str, timeout: float) -> dict[str, Any]:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            for i, n in enumerate(self.received):
                if i >= self.taken and n["method"] == method:
                    self.taken = i + 1
                    return n
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"no {method} within {timeout} s")
            await asyncio.sleep(0.05)


NOTIFICATIONS = Notifications()


async def run_step(session: ClientSession, step: dict[str, Any]) -> Any:
    op = step.get("op")
    if op == "subscribe_resource":
        return await session.subscribe_resource(step["uri"])
    if op == "unsubscribe_resource":
        return await session.unsubscribe_resource(step["uri"])
    if op == "wait_notification":
        return await NOTIFICATIONS.wait(step["method"], float(step.get("timeout", 10)))
    if op == "sleep":
        await asyncio.sleep(float(step["seconds"]))
        return {}
    if op == "list_tools":
        return await session.list_tools()
    if op == "call_tool":
        return await session.call_tool(step["name"], step.get("arguments") or {})
    if op == "list_resources":
        return await session.list_resources()
    if op == "list_resource_templates":
        return await session.list_resource_templates()
    if op == "read_resource":
        return await session.read_resource(step["uri"])
    if op == "list_prompts":
        return await session.list_prompts()
    if op == "get_prompt":
        return await session.get_prompt(step["name"], step.get("arguments") or {})
    if op == "ping":
        return await session.send_ping()
    raise ValueError(f"unknown op {op!r}")


@asynccontextmanager
async def open_streams(url: str | None, stdio_cmd: str | None, headers: dict[str, str], status: StatusRecorder):
    if stdio_cmd is not None:
        argv = shlex.split(stdio_cmd)
        async with stdio_client(StdioServerParameters(command=argv[0], args=argv[1:])) as streams:
            yield streams
        return
    http = create_mcp_http_client(headers=headers)
    http.event_hooks["response"].append(status)
    async with http:
        async with streamable_http_client(url, http_client=http) as streams:
            yield streams


async def run(
    url: str | None, stdio_cmd: str | None, headers: dict[str, str], steps: list[dict[str, Any]], init_line: bool
) -> int:
    status = StatusRecorder()
    try:
        async with open_streams(url, stdio_cmd, headers, status) as streams:
            read_stream, write_stream = streams[0], streams[1]
            async with ClientSession(
                read_stream, write_stream, read_timeout_seconds=STEP_TIMEOUT_S, message_handler=NOTIFICATIONS
            ) as session:
                try:
                    init = await session.initialize()
                except Exception as e:  # noqa: BLE001
                    emit({"step": "initialize", "op": "initialize", "error": error_obj(e, status)})
                    return 1
                if init_line:
                    emit({"step": "initialize", "op": "initialize", "result": dump(init)})
                for i, step in enumerate(steps):
                    status.last = None
                    try:
                        result = await run_step(session, step)
                        emit({"step": i, "op": step.get("op"), "result": dump(result)})
                    except Exception as e:  # noqa: BLE001
                        emit({"step": i, "op": step.get("op"), "error": error_obj(e, status)})
    except Exception as e:  # noqa: BLE001  transport failure outside a step
        emit({"step": "transport", "op": "connect", "error": error_obj(e, status)})
        return 1
    return 0


def parse_header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"header must look like 'Name: value', got {text!r}")
    return name.strip(), value.strip()


def main() -> int:
    p = argparse.ArgumentParser(description="Run a script of MCP steps against a Streamable HTTP URL.")
    p.add_argument("url", nargs="?", help="the Streamable HTTP endpoint")
    p.add_argument("--stdio", metavar="CMD", help="spawn CMD and talk MCP over its stdio instead")
    p.add_argument("--header", action="append", type=parse_header, default=[], help="'Name: value', repeatable")
    p.add_argument("--script", required=True, help="JSON file with the list of steps, or - for stdin")
    p.add_argument("--initialize-line", action="store_true", help="print the initialize result first")
    args = p.parse_args()
    if (args.url is None) == (args.stdio is None):
        p.error("give exactly one of URL and --stdio CMD")
    text = sys.stdin.read() if args.script == "-" else open(args.script, encoding="utf-8").read()
    steps = json.loads(text)
    if not isinstance(steps, list):
        print("the script must be a JSON list of steps", file=sys.stderr)
        return 2
    return asyncio.run(run(args.url, args.stdio, dict(args.header), steps, args.initialize_line))


if __name__ == "__main__":
    sys.exit(main())
