"""The bundle manifest: reading it and checking every digest, without loading any model.

``manifest.json`` holds name, version, creation time, the architecture (``model``), the
preprocessing parameters, the operating threshold, a training-data summary, the SHA-256
of every other file in the folder (``files``) and ``digest``: the SHA-256 of the
manifest's canonical JSON without ``digest`` itself, which therefore covers every file.
A frozen base text encoder outside the bundle is pinned by the SHA-256 of its files.
Kept free of torch so ``mmbcd-node model info`` answers quickly.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import json
from pathlib import Path
from typing import Any

FORMAT = "mmbcd-bundle/1"
MANIFEST = "manifest.json"


class BundleError(ValueError):
    """The bundle is incomplete, altered or inconsistent; the message names the file."""


def default_bundle_path() -> Path:
    """The bundle the node uses unless configured otherwise: the demo bundle trained on
    synthetic studies (``ml/bundles/demo``, ``make demo-model``)."""
    return Path(__file__).parent / "bundles" / "demo"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def manifest_digest(manifest: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON of ``manifest`` without its ``digest`` key."""
    body = {k: v for k, v in manifest.items() if k != "digest"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def resolve_location(location: str) -> Path:
    """A folder path, or ``package:NAME/SUBDIR`` inside an installed Python package."""
    if location.startswith("package:"):
        package, _, sub = location.removeprefix("package:").partition("/")
        try:
            root = Path(str(importlib.resources.files(package)))
        except ModuleNotFoundError as exc:
            raise BundleError(f"external encoder package {package!r} is not installed") from exc
        return root / sub
    return Path(location).expanduser()


def pin_folder(folder: Path) -> dict[str, str]:
    """SHA-256 of every file directly in ``folder`` (what an external pin records)."""
    return {p.name: sha256_file(p) for p in sorted(folder.iterdir()) if p.is_file()}


def _verify_files(root: Path, pinned: dict[str, str], what: str) -> None:
    for name, expected in sorted(pinned.items()):
        file = root / name
        if not file.is_file():
            raise BundleError(f"{what}: file {file} is missing")
        if sha256_file(file) != expected:
            raise BundleError(f"{what}: file {file} does not match its SHA-256 in the manifest "
                              "(altered or replaced)")


def read_manifest(path: Path | str, verify: bool = True) -> dict[str, Any]:
    """The manifest of the bundle at ``path``; with ``verify``, every digest is checked.

    Raises ``BundleError`` naming the file that is missing, unlisted or altered.
    """
    root = Path(path)
    manifest_file = root / MANIFEST
    if not manifest_file.is_file():
        raise BundleError(f"bundle {root}: {MANIFEST} is missing")
    try:
        manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"bundle {root}: {MANIFEST} is not readable JSON: {exc}") from exc
    if manifest.get("format") != FORMAT:
        raise BundleError(f"bundle {root}: {MANIFEST} format is {manifest.get('format')!r}, "
                          f"expected {FORMAT!r}")
    if not verify:
        return manifest
    if manifest.get("digest") != manifest_digest(manifest):
        raise BundleError(f"bundle {root}: {MANIFEST} was altered (digest does not match)")
    listed = manifest.get("files", {})
    _verify_files(root, listed, f"bundle {root}")
    present = {p.relative_to(root).as_posix() for p in root.rglob("*")
               if p.is_file() and p.name != MANIFEST and "__pycache__" not in p.parts}
    unlisted = sorted(present - set(listed))
    if unlisted:
        raise BundleError(f"bundle {root}: file {unlisted[0]} is not listed in {MANIFEST}")
    external = manifest["model"]["text_encoder"].get("external")
    if external:
        _verify_files(resolve_location(external["location"]), external["files"],
                      "external text encoder")
    return manifest
