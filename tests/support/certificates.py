"""Self-signed certificates for 127.0.0.1, made with openssl, for the TLS listeners."""

from __future__ import annotations

import subprocess
from pathlib import Path


def self_signed_certificate(folder: Path, name: str) -> tuple[Path, Path]:
    """``(certificate, key)`` for 127.0.0.1 (CN and subjectAltName), valid two days."""
    cert, key = folder / f"{name}.pem", folder / f"{name}.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key
