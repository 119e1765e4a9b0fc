#!/usr/bin/env python3
"""Run the MCP conformance runner's server scenarios against a URL and summarise.

    run_conformance.py URL [--header 'Name: value' ...] [--scenarios a,b,c]
                           [--include-not-scored] [--shim] [--out FILE]
                           [--runner PATH/TO/conformance/dist/index.js]

The runner is `@modelcontextprotocol/conformance` 0.1.13, pinned in
crates/mandate/tests/node (install it with `npm ci --prefix crates/mandate/tests/node`).
By default it is taken from ../node/node_modules next to this script; --runner or
the MCP_CONFORMANCE_RUNNER environment variable point elsewhere. `node` must be on
PATH (Node 20 is enough for 0.1.13).

Scenarios: by default the `server` list that the 2025-11-25 conformance requirements
(shared/conformance/mcp/2025-11-25.yaml) score, copied below; --include-not-scored
adds the server scenarios that file lists as not scored (pending or added after the
anchor release). Each scenario is looked up in the runner's own listing
(`conformance list --server`); one the runner does not know is reported as
not_available. The scenarios run one at a time (`conformance server --url U
--scenario S -o DIR`) and the outcome is read from the checks.json the runner
writes: a scenario passes when it produced at least one check and none of them has
status FAILURE (WARNING and INFO checks do not fail it, as in the runner's own
summary).

Output: one JSON line on stdout
    {"passed":[...],"failed":[...],"not_available":[...],"warnings":{...},"errors":{...}}
(`warnings`: scenario -> the names of its WARNING checks; `errors`: failed scenario ->
its failure messages) and then the line `mcp conformance: N passed, M failed`.
--out FILE writes the same JSON, indented, to FILE. The exit code is 0 whatever the
results (the calling test decides); it is 2 only on bad usage or when the runner
cannot be started at all.

Authorization header: conformance 0.1.13 has no way to add a header to the requests
it sends for server scenarios. Its CLI has no header option, no environment variable
is read on that path, and every scenario builds its transport as
`new StreamableHTTPClientTransport(new URL(url))` without request options (the
DNS-rebinding scenario uses undici's `request` with fixed headers). So when --header
is given (or --shim), this script starts a loopback HTTP shim on 127.0.0.1:0 and
points the runner at it instead of URL. The shim:
  * accepts HTTP/1.1 requests of any method (POST, GET, DELETE, ...), same path and
    query as URL, and forwards each one on a new connection to URL's host and port;
  * sets every --header on the forwarded request (replacing a header of that name);
  * passes all other request headers through (Mcp-Session-Id, MCP-Protocol-Version,
    Accept, Last-Event-ID, ...) except the hop-by-hop ones; a Host or Origin naming
    the shim itself is rewritten to URL's authority / origin, any other Host or
    Origin (e.g. the DNS-rebinding scenario's evil.example.com) is passed through
    unchanged so that the upstream's own Host/Origin checks are what is tested;
  * relays the response byte for byte as it arrives (status line, headers such as
    Mcp-Session-Id and Content-Type, and the body, chunked SSE streams included,
    without buffering), only adding `Connection: close`; the upstream leg is opened
    with `Connection: close` too, so a response ends when the upstream closes, and
    the downstream connection is closed after each response;
  * when the runner drops the connection (e.g. it cancels an SSE stream) the
    upstream connection is closed as well.
The shim uses only the standard library (asyncio). Plain http:// targets are what it
is meant for; an https:// URL is reached with Python's default TLS verification.
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import threading
import urllib.parse
from pathlib import Path

# 2025-11-25.yaml, `server:` (the scored list), in that file's order.
SCORED_SERVER_SCENARIOS = [
    "server-initialize",
    "logging-set-level",
    "ping",
    "completion-complete",
    "tools-list",
    "tools-call-simple-text",
    "tools-call-image",
    "tools-call-audio",
    "tools-call-embedded-resource",
    "tools-call-mixed-content",
    "tools-call-with-logging",
    "tools-call-error",
    "tools-call-with-progress",
    "tools-call-sampling",
    "tools-call-elicitation",
    "elicitation-sep1034-defaults",
    "server-sse-multiple-streams",
    "elicitation-sep1330-enums",
    "resources-list",
    "resources-read-text",
    "resources-read-binary",
    "resources-templates-read",
    "resources-subscribe",
    "resources-unsubscribe",
    "prompts-list",
    "prompts-get-simple",
    "prompts-get-with-args",
    "prompts-get-embedded-resource",
    "prompts-get-with-image",
    "dns-rebinding-protection",
]
# 2025-11-25.yaml, `not_scored:` entries with `leg: server`.
NOT_SCORED_SERVER_SCENARIOS = ["server-session-lifecycle", "json-schema-2020-12", "server-sse-polling"]

SCENARIO_TIMEOUT_S = 180

HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
}


# --------------------------------------------------------------------------- shim


class HeaderShim:
    """Loopback HTTP/1.1 forwarder that adds fixed headers; runs in its own thread."""

    def __init__(self, target_url: str, headers: list[tuple[str, str]]):
        t = urllib.parse.urlsplit(target_url)
        if t.scheme not in ("http", "https") or not t.hostname:
            raise ValueError(f"unsupported target URL: {target_url}")
        self.target = t
        self.tls = t.scheme == "https"
        self.target_port = t.port or (443 if self.tls else 80)
        self.target_authority = t.netloc.rsplit("@", 1)[-1]
        self.target_origin = f"{t.scheme}://{self.target_authority}"
        self.add_headers = headers
        self.add_names = {n.lower() for n, _ in headers}
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.base_events.Server | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="header-shim", daemon=True)

    # -- lifecycle

    def start(self) -> str:
        self._thread.start()
        if not self._ready.wait(10) or not self.port:
            raise RuntimeError("header shim did not start")
        path = self.target.path or "/"
        query = f"?{self.target.query}" if self.target.query else ""
        return f"http://127.0.0.1:{self.port}{path}{query}"

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            self._server = loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
            self.port = self._server.sockets[0].getsockname()[1]
        finally:
            self._ready.set()
        loop.run_forever()
        self._server.close()
        for task in asyncio.all_tasks(loop):
            task.cancel()
        loop.run_until_complete(asyncio.sleep(0))
        loop.close()

    # -- one downstream connection

    def _own_authorities(self) -> set[str]:
        return {f"127.0.0.1:{self.port}", f"localhost:{self.port}"}

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self._forward_one(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            pass
        except asyncio.CancelledError:
            pass
        finally:
            try:
                writer.close()
            except Exception:
                pass

    async def _forward_one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, target, _version = lines[0].split(" ", 2)
        headers: list[tuple[str, str]] = []
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers.append((name.strip(), value.strip()))
        lower = {n.lower(): v for n, v in headers}

        # Request body: Content-Length or chunked (re-framed with Content-Length).
        body = b""
        if "chunked" in lower.get("transfer-encoding", "").lower():
            chunks = []
            while True:
                size_line = await reader.readuntil(b"\r\n")
                size = int(size_line.split(b";")[0].strip(), 16)
                if size == 0:
                    while (await reader.readuntil(b"\r\n")) != b"\r\n":
                        pass
                    break
                chunks.append(await reader.readexactly(size))
                await reader.readexactly(2)
            body = b"".join(chunks)
        elif "content-length" in lower:
            body = await reader.readexactly(int(lower["content-length"]))

        out: list[tuple[str, str]] = []
        for name, value in headers:
            ln = name.lower()
            if ln in HOP_BY_HOP or ln in self.add_names or ln == "content-length":
                continue
            if ln == "host" and value.lower() in self._own_authorities():
                value = self.target_authority
            if ln == "origin" and value.lower() in {f"http://{a}" for a in self._own_authorities()}:
                value = self.target_origin
            out.append((name, value))
        if "host" not in lower:
            out.append(("Host", self.target_authority))
        out.extend(self.add_headers)
        if body or method.upper() in ("POST", "PUT", "PATCH"):
            out.append(("Content-Length", str(len(body))))
        out.append(("Connection", "close"))

        ssl_ctx = ssl.create_default_context() if self.tls else None
        up_reader, up_writer = await asyncio.open_connection(
            self.target.hostname, self.target_port, ssl=ssl_ctx, server_hostname=self.target.hostname if self.tls else None
        )
        try:
            request = f"{method} {target} HTTP/1.1\r\n" + "".join(f"{n}: {v}\r\n" for n, v in out) + "\r\n"
            up_writer.write(request.encode("latin-1") + body)
            await up_writer.drain()

            # Response head: pass it through, with Connection: close.
            resp_head = await up_reader.readuntil(b"\r\n\r\n")
            resp_lines = resp_head.decode("latin-1").split("\r\n")
            kept = [resp_lines[0]] + [
                l for l in resp_lines[1:] if l and l.split(":", 1)[0].strip().lower() not in ("connection", "keep-alive")
            ]
            writer.write(("\r\n".join(kept) + "\r\nConnection: close\r\n\r\n").encode("latin-1"))
            await writer.drain()

            # Body: raw bytes as they arrive, until the upstream closes (or the runner does).
            async def pump() -> None:
                while True:
                    data = await up_reader.read(65536)
                    if not data:
                        return
                    writer.write(data)
                    await writer.drain()

            async def downstream_closed() -> None:
                while await reader.read(65536):
                    pass

            tasks = [asyncio.ensure_future(pump()), asyncio.ensure_future(downstream_closed())]
            _done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for t in pending:
                t.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        finally:
            try:
                up_writer.close()
            except Exception:
                pass


# --------------------------------------------------------------------------- runner


def default_runner() -> Path:
    env = os.environ.get("MCP_CONFORMANCE_RUNNER")
    if env:
        return Path(env)
    here = Path(__file__).resolve().parent
    return here.parent / "node" / "node_modules" / "@modelcontextprotocol" / "conformance" / "dist" / "index.js"


def runner_cmd(runner: Path) -> list[str]:
    node = shutil.which("node") or "node"
    return [node, str(runner)]


def known_server_scenarios(runner: Path) -> list[str]:
    out = subprocess.run(runner_cmd(runner) + ["list", "--server"], capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        raise RuntimeError(f"`conformance list --server` failed: {out.stderr.strip()}")
    names = []
    for line in out.stdout.splitlines():
        line = line.strip()
        if line.startswith("- "):
            names.append(line[2:].strip())
    return names


def run_scenario(runner: Path, url: str, scenario: str) -> tuple[str, list[str], list[str]]:
    """Returns (outcome 'passed'|'failed', warning check names, failure messages)."""
    with tempfile.TemporaryDirectory(prefix="mcp-conf-") as tmp:
        cmd = runner_cmd(runner) + ["server", "--url", url, "--scenario", scenario, "-o", tmp]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=SCENARIO_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            return "failed", [], [f"runner timed out after {SCENARIO_TIMEOUT_S} s"]
        files = glob.glob(os.path.join(tmp, "*", "checks.json"))
        if not files:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
            return "failed", [], [f"runner wrote no checks.json (exit {proc.returncode}): " + " | ".join(tail)]
        with open(files[0], encoding="utf-8") as f:
            checks = json.load(f)
    failures = [
        f"{c.get('name') or c.get('id')}: {c.get('errorMessage') or c.get('description') or 'FAILURE'}"
        for c in checks
        if c.get("status") == "FAILURE"
    ]
    warnings = [str(c.get("name") or c.get("id")) for c in checks if c.get("status") == "WARNING"]
    if not checks:
        failures = ["no checks produced"]
    return ("failed" if failures else "passed"), warnings, failures


def parse_header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"header must look like 'Name: value', got {text!r}")
    return name.strip(), value.strip()


def main() -> int:
    p = argparse.ArgumentParser(description="Run MCP conformance server scenarios against URL (see module doc).")
    p.add_argument("url")
    p.add_argument("--header", action="append", type=parse_header, default=[], help="'Name: value', repeatable")
    p.add_argument("--scenarios", help="comma-separated scenario names (default: the 2025-11-25 scored server list)")
    p.add_argument("--include-not-scored", action="store_true", help="also run the not-scored server scenarios")
    p.add_argument("--shim", action="store_true", help="go through the header shim even without --header")
    p.add_argument("--out", help="also write the JSON summary to this file")
    p.add_argument("--runner", type=Path, default=None, help="path to conformance dist/index.js")
    args = p.parse_args()

    runner = args.runner or default_runner()
    if not runner.is_file():
        print(f"conformance runner not found at {runner}; run `npm ci --prefix crates/mandate/tests/node`", file=sys.stderr)
        return 2
    if args.scenarios:
        wanted = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    else:
        wanted = list(SCORED_SERVER_SCENARIOS)
        if args.include_not_scored:
            wanted += NOT_SCORED_SERVER_SCENARIOS
    try:
        known = set(known_server_scenarios(runner))
    except Exception as e:  # noqa: BLE001
        print(f"cannot list the runner's scenarios: {e}", file=sys.stderr)
        return 2

    shim = None
    url = args.url
    if args.header or args.shim:
        shim = HeaderShim(args.url, args.header)
        url = shim.start()
        print(f"header shim {url} -> {args.url}", file=sys.stderr)

    summary: dict = {"passed": [], "failed": [], "not_available": [], "warnings": {}, "errors": {}}
    try:
        for scenario in wanted:
            if scenario not in known:
                summary["not_available"].append(scenario)
                continue
            outcome, warnings, failures = run_scenario(runner, url, scenario)
            summary[outcome].append(scenario)
            if warnings:
                summary["warnings"][scenario] = warnings
            if failures:
                summary["errors"][scenario] = failures
            print(f"  {scenario}: {outcome}" + (f" ({'; '.join(failures)})" if failures else ""), file=sys.stderr)
    finally:
        if shim is not None:
            shim.stop()

    print(json.dumps(summary), flush=True)
    print(f"mcp conformance: {len(summary['passed'])} passed, {len(summary['failed'])} failed", flush=True)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(summary, f, indent=2)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
