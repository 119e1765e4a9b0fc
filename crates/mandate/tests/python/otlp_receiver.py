#!/usr/bin/env python3
"""An OTLP/HTTP receiver on loopback for the tests: decodes what it is sent with the
OpenTelemetry protobufs (opentelemetry-proto) and writes one JSON line per span or log
record to --out.

    otlp_receiver.py --out FILE [--refuse-logs STATUS | --reject-logs N]

Prints `LISTENING http://127.0.0.1:PORT` once it accepts requests. Accepts POST
/v1/traces (ExportTraceServiceRequest) and /v1/logs (ExportLogsServiceRequest), protobuf
only; anything else is 415 / 404. A body that does not parse is 400 (and no line).

Lines:
    {"signal": "span", "name", "trace_id", "span_id", "parent_span_id" (hex, "" for a
     root), "attributes": {key: value}, "resource": {key: value}, "headers": {...}}
    {"signal": "log", "event_name", "body", "severity_text", "time_unix_nano",
     "attributes": {key: value}, "resource": {...}, "scope": name, "headers": {...}}

--refuse-logs STATUS answers every /v1/logs request with that HTTP status;
--reject-logs N answers 200 with a partial success rejecting N records.
"""

from __future__ import annotations

import argparse
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsPartialSuccess,
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

MAX_BODY = 8 * 1024 * 1024


def value(v: AnyValue) -> Any:
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: value(kv.value) for kv in v.kvlist_value.values}
    if kind == "bytes_value":
        return v.bytes_value.hex()
    return getattr(v, kind) if kind else None


def attributes(kvs: Any) -> dict[str, Any]:
    return {kv.key: value(kv.value) for kv in kvs}


class Receiver(BaseHTTPRequestHandler):
    out_lock = threading.Lock()
    out_path = ""
    refuse_logs = 0
    reject_logs = 0

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def answer(self, status: int, body: bytes = b"") -> None:
        self.send_response(status)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def write(self, lines: list[dict[str, Any]]) -> None:
        with self.out_lock, open(self.out_path, "a", encoding="utf-8") as f:
            for line in lines:
                f.write(json.dumps(line) + "\n")

    def parse(self, message: Any, body: bytes) -> Any:
        """`message` parsed from `body`, or None once a 400 is answered."""
        try:
            message.ParseFromString(body)
        except Exception:  # noqa: BLE001 (any parse failure is a 400)
            self.answer(400)
            return None
        return message

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        length = int(self.headers.get("content-length") or 0)
        if length > MAX_BODY:
            self.answer(413)
            return
        body = self.rfile.read(length)
        if self.headers.get("content-type") != "application/x-protobuf":
            self.answer(415)
            return
        headers = {k.lower(): v for k, v in self.headers.items() if k.lower().startswith("x-")}
        if self.path == "/v1/traces":
            request = self.parse(ExportTraceServiceRequest(), body)
            if request is None:
                return
            lines = []
            for rs in request.resource_spans:
                resource = attributes(rs.resource.attributes)
                for ss in rs.scope_spans:
                    for span in ss.spans:
                        lines.append({
                            "signal": "span",
                            "name": span.name,
                            "trace_id": span.trace_id.hex(),
                            "span_id": span.span_id.hex(),
                            "parent_span_id": span.parent_span_id.hex(),
                            "attributes": attributes(span.attributes),
                            "resource": resource,
                            "headers": headers,
                        })
            self.write(lines)
            self.answer(200, ExportTraceServiceResponse().SerializeToString())
        elif self.path == "/v1/logs":
            if self.refuse_logs:
                self.answer(self.refuse_logs)
                return
            request = self.parse(ExportLogsServiceRequest(), body)
            if request is None:
                return
            if self.reject_logs:
                response = ExportLogsServiceResponse(
                    partial_success=ExportLogsPartialSuccess(
                        rejected_log_records=self.reject_logs, error_message="over quota"
                    )
                )
                self.answer(200, response.SerializeToString())
                return
            lines = []
            for rl in request.resource_logs:
                resource = attributes(rl.resource.attributes)
                for sl in rl.scope_logs:
                    for record in sl.log_records:
                        lines.append({
                            "signal": "log",
                            "event_name": record.event_name,
                            "body": value(record.body),
                            "severity_text": record.severity_text,
                            "time_unix_nano": record.time_unix_nano,
                            "attributes": attributes(record.attributes),
                            "resource": resource,
                            "scope": sl.scope.name,
                            "headers": headers,
                        })
            self.write(lines)
            self.answer(200, ExportLogsServiceResponse().SerializeToString())
        else:
            self.answer(404)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--refuse-logs", type=int, default=0)
    group.add_argument("--reject-logs", type=int, default=0)
    args = parser.parse_args()
    Receiver.out_path = args.out
    Receiver.refuse_logs = args.refuse_logs
    Receiver.reject_logs = args.reject_logs
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    print(f"LISTENING http://127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
