#!/usr/bin/env python3
"""A real MCP 2026-07-28 client (Python `mcp` package, stateless, no handshake) making
one tool call that a person must approve.

    mcp_modern_client.py URL --header 'Authorization: Bearer X' --tool NAME
        --arguments JSON --api BASE --person TOKEN

The client declares elicitation (form and URL) by giving the SDK an elicitation
callback. When the call answers `input_required` with a URL-mode elicitation, the SDK
hands it to the callback, which stands in for the person: it prints {"asked": URL},
approves the approval the page names (POST BASE/v1/approvals/{id}/approve with the
person's API token; the id is the URL's last segment) and answers `accept`. The SDK
then retries the call with the answer and the echoed request state.

With --wait-for PATH instead of --api/--person, the person acts elsewhere (the test
drives a browser through the page, e.g. to connect their account at a service): the
callback answers `accept` once PATH exists (at most 120 s).

With --answer JSON, a form-mode elicitation (one an upstream tool asks during the
call, relayed by the gateway as `input_required`) is accepted with that content;
without it, it is declined.

Output, one JSON line each: {"asked": URL, "mode": ...} per elicitation, then
{"result": {...}} (the tool result, wire names) or {"error": {...}}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import urllib.request
import warnings
from typing import Any

warnings.filterwarnings("ignore", message=r".*deprecated as of 2026-07-28.*")

from mcp import Client, types
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp_client import parse_header  # this directory: one header syntax for both clients

REVISION = "2026-07-28"


def emit(obj: dict[str, Any]) -> None:
    print(json.dumps(obj), flush=True)


def approve(api: str, person: str, approval: str) -> None:
    request = urllib.request.Request(
        f"{api}/v1/approvals/{approval}/approve",
        data=b"{}",
        method="POST",
        headers={"Authorization": f"Bearer {person}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()


async def run(args: argparse.Namespace) -> int:
    async def on_elicit(context: Any, params: Any) -> types.ElicitResult:
        url = getattr(params, "url", None)
        emit({"asked": url, "mode": getattr(params, "mode", None)})
        if not url:
            if args.answer is None:
                return types.ElicitResult(action="decline")
            emit({"message": getattr(params, "message", None)})
            return types.ElicitResult(action="accept", content=json.loads(args.answer))
        if args.wait_for:
            for _ in range(1200):
                if os.path.exists(args.wait_for):
                    return types.ElicitResult(action="accept")
                await asyncio.sleep(0.1)
            return types.ElicitResult(action="cancel")
        approval = url.rstrip("/").rsplit("/", 1)[-1]
        await asyncio.to_thread(approve, args.api, args.person, approval)
        return types.ElicitResult(action="accept")

    headers = dict(args.header)
    http = create_mcp_http_client(headers=headers)
    async with http:
        client = Client(
            streamable_http_client(args.url, http_client=http),
            mode=REVISION,
            elicitation_callback=on_elicit,
            read_timeout_seconds=60,
        )
        async with client:
            try:
                result = await client.call_tool(args.tool, json.loads(args.arguments))
                emit({"result": result.model_dump(mode="json", by_alias=True, exclude_none=True)})
            except Exception as e:  # noqa: BLE001  reported, never raised
                emit({"error": {"message": str(e), "type": type(e).__name__}})
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description="One MCP 2026-07-28 tool call answered through input_required.")
    p.add_argument("url")
    p.add_argument("--header", action="append", type=parse_header, default=[])
    p.add_argument("--tool", required=True)
    p.add_argument("--arguments", default="{}")
    p.add_argument("--api", help="where the person's API is (approvals)")
    p.add_argument("--person", help="the person's API token")
    p.add_argument("--wait-for", help="accept a URL elicitation once this file exists")
    p.add_argument("--answer", help="content to accept a form-mode elicitation with (JSON)")
    args = p.parse_args()
    if not args.wait_for and not (args.api and args.person):
        p.error("--api and --person are required without --wait-for")
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
