"""Orthanc with its DICOMweb plugin, and one local origin serving OHIF and proxying to it."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tests.support.node import free_port
from tests.support.pacs import Orthanc

PLUGIN_DIRS = (Path("/usr/share/orthanc/plugins"), Path("/usr/lib/orthanc"))


def dicomweb_plugin() -> Path:
    """The DICOMweb plugin of the Debian package ``orthanc-dicomweb``."""
    for directory in PLUGIN_DIRS:
        found = sorted(directory.glob("libOrthancDicomWeb.so*"))
        if found:
            return found[0]
    raise FileNotFoundError("libOrthancDicomWeb.so not found: apt-get install orthanc-dicomweb")


def start_orthanc(directory: Path) -> Orthanc:
    """The tests' Orthanc (``tests/support/pacs.py``) with its DICOMweb plugin at
    ``/dicom-web/``, started in ``directory``."""
    return Orthanc(ae_title="ORTHANC", port=free_port(), http_port=free_port(),
                   directory=directory, node_ae="MMBCD", node_port=free_port(),
                   log_path=directory / "orthanc.log",
                   extra={"Name": "check-viewer", "Plugins": [str(dicomweb_plugin())],
                          "DicomWeb": {"Enable": True, "Root": "/dicom-web/"}}).start()


def upload(orthanc: Orthanc, files: list[Path]) -> None:
    """POST each file to Orthanc's /instances; raise unless Orthanc stored it."""
    for path in files:
        request = urllib.request.Request(f"{orthanc.url}/instances", data=path.read_bytes(),
                                         headers={"Content-Type": "application/dicom"})
        with urllib.request.urlopen(request, timeout=30) as response:
            status = json.loads(response.read())["Status"]
        if status not in ("Success", "AlreadyStored"):
            raise RuntimeError(f"Orthanc did not store {path}: {status}")


class _Handler(SimpleHTTPRequestHandler):
    """OHIF's dist/ with SPA fallback, our app-config.js, /dicom-web proxied to Orthanc."""

    def __init__(self, *args: object, upstream: str, config: bytes, **kwargs: object) -> None:
        self.upstream, self.config = upstream, config
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass

    def end_headers(self) -> None:
        # Cross-origin isolation, as OHIF's deployment notes ask (SharedArrayBuffer).
        self.send_header("Cross-Origin-Opener-Policy", "same-origin")
        self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
        super().end_headers()

    def do_GET(self) -> None:  # noqa: N802
        path = self.path.split("?")[0]
        if path.startswith("/dicom-web/"):
            return self._proxy()
        if path == "/app-config.js":
            return self._send(200, "application/javascript", self.config)
        if not Path(self.translate_path(path)).is_file():
            self.path = "/index.html"
        return super().do_GET()

    def _proxy(self) -> None:
        headers = {k: v for k, v in self.headers.items() if k.lower() == "accept"}
        request = urllib.request.Request(self.upstream + self.path, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                status, kind, body = response.status, response.headers["Content-Type"], \
                    response.read()
        except urllib.error.HTTPError as error:
            status, kind, body = error.code, error.headers["Content-Type"], error.read()
        self._send(status, kind or "application/octet-stream", body)

    def _send(self, status: int, kind: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def app_config(title: str) -> str:
    """OHIF's app-config.js: one DICOMweb data source on this origin."""
    source = {
        "namespace": "@ohif/extension-default.dataSourcesModule.dicomweb",
        "sourceName": "orthanc",
        "configuration": {
            "friendlyName": title, "name": "orthanc",
            "wadoUriRoot": "/dicom-web", "qidoRoot": "/dicom-web", "wadoRoot": "/dicom-web",
            "qidoSupportsIncludeField": False, "imageRendering": "wadors",
            "thumbnailRendering": "wadors", "enableStudyLazyLoad": True,
            "supportsFuzzyMatching": False, "supportsWildcard": True,
            "omitQuotationForMultipartRequest": True, "bulkDataURI": {"enabled": True},
        },
    }
    config = {
        "routerBasename": "/", "showStudyList": True, "extensions": [], "modes": [],
        "customizationService": {}, "maxNumberOfWebWorkers": 2,
        "showWarningMessageForCrossOrigin": False, "showCPUFallbackMessage": True,
        "showLoadingIndicator": True, "disableConfirmationPrompts": True,
        "investigationalUseDialog": {"option": "never"},
        "defaultDataSourceName": "orthanc", "dataSources": [source],
    }
    return f"window.config = {json.dumps(config, indent=1)};\n"


def serve_viewer(dist: Path, upstream: str, config: str) -> ThreadingHTTPServer:
    """Serve ``dist`` on a free loopback port in a daemon thread."""
    handler = partial(_Handler, directory=str(dist), upstream=upstream,
                      config=config.encode())
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
