"""The ``http`` role: ``/healthz`` (JSON, 503 when unhealthy) and ``/metrics`` (Prometheus)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from mmbcd_node.config import NodeConfig
from mmbcd_node.logs import get_logger
from mmbcd_node.ops.health import check_health
from mmbcd_node.ops.metrics import NodeCollector, exposition
from mmbcd_node.process import running_roles

log = get_logger(__name__)


class HttpRole:
    """Serves health and metrics on ``[http] host:port`` from a background thread.

    ``roles`` are the roles of this process, whose listeners and worker ``/healthz``
    requires; by default the ones ``serve`` is running here.
    """

    name = "http"

    def __init__(self, config: NodeConfig, sessions: sessionmaker[Session],
                 roles: Callable[[], Sequence[str]] | None = None) -> None:
        self.config = config
        self.engine: Engine = sessions.kw["bind"]
        if roles is None:
            roles = running_roles
        self.roles = roles
        self.collector = NodeCollector(self.engine, config.storage.root,
                                       config.worker.heartbeat_seconds)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Bind and serve; ``OSError`` when the port is taken."""
        http = self.config.http
        if not http.enabled:
            log.info("http_disabled")
            return
        self._server = ThreadingHTTPServer((http.host, http.port), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="http",
                                        daemon=True)
        self._thread.start()
        log.info("http_listening", host=http.host, port=self._server.server_port)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        role = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "mmbcd-node"

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                path = self.path.split("?", 1)[0]
                if path == "/healthz":
                    report = check_health(role.config, role.engine, role.roles())
                    status = HTTPStatus.OK if report.healthy else HTTPStatus.SERVICE_UNAVAILABLE
                    self._send(status, "application/json",
                               json.dumps(report.as_json(), indent=1).encode())
                    if not report.healthy:
                        failed = [c.name for c in report.checks if c.required and not c.ok]
                        log.warning("unhealthy", failed=",".join(failed))
                elif path == "/metrics":
                    self._send(HTTPStatus.OK, CONTENT_TYPE_LATEST,
                               exposition(role.engine, collector=role.collector))
                else:
                    self._send(HTTPStatus.NOT_FOUND, "text/plain", b"try /healthz or /metrics\n")

            def _send(self, status: HTTPStatus, content_type: str, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    # A balancer's health check may hang up once it has the status line.
                    log.debug("http_client_left", path=self.path)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                log.debug("http_request", peer=self.address_string(), request=format % args)

        return Handler
