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


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_ca(folder: Path, name: str = "Test Hospital CA") -> tuple[Path, Path]:
    """``(certificate, key)`` of a certificate authority, valid two days."""
    folder.mkdir(parents=True, exist_ok=True)
    slug = name.lower().replace(" ", "-")
    cert, key = folder / f"{slug}.pem", folder / f"{slug}.key"
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
             "-out", str(cert), "-days", "2", "-subj", f"/CN={name}")
    return cert, key


def issue(folder: Path, name: str, ca: tuple[Path, Path]) -> tuple[Path, Path]:
    """``(certificate, key)`` for ``name``, also valid for 127.0.0.1, signed by ``ca``."""
    key, csr, cert = folder / f"{name}.key", folder / f"{name}.csr", folder / f"{name}.pem"
    extensions = folder / f"{name}.ext"
    extensions.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr),
             "-subj", f"/CN={name}")
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca[0]), "-CAkey", str(ca[1]),
             "-CAcreateserial", "-out", str(cert), "-days", "2", "-extfile", str(extensions))
    return cert, key
