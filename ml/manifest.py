"""The bundle manifest: reading it and checking every digest, without loading any model.

``manifest.json`` holds name, version, creation time, the architecture (``model``), the
preprocessing parameters, the operating threshold, a training-data summary, the SHA-256
of every other file in the folder (``files``) and ``digest``: the SHA-256 of the
manifest's canonical JSON without ``digest`` itself, which therefore covers every file.
A frozen base text encoder outside the bundle is pinned by the SHA-256 of its files; one
from the Hugging Face cache (``hf:ID``) also by the commit its revision resolved to.
Kept free of torch so ``mmbcd-node model info`` answers quickly.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import json
import os
import re
from pathlib import Path
from typing import Any

FORMAT = "mmbcd-bundle/1"
MANIFEST = "manifest.json"
HUB_PREFIX = "hf:"
COMMIT = re.compile(r"[0-9a-f]{40}")


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


def hub_location(location: str) -> tuple[str, str | None] | None:
    """``(hub id, revision or None)`` of an ``hf:ID[@REVISION]`` location, None for any
    other location; ``BundleError`` for an invalid hub id or an empty revision."""
    if not location.startswith(HUB_PREFIX):
        return None
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    repo_id, at, revision = location.removeprefix(HUB_PREFIX).partition("@")
    try:
        validate_repo_id(repo_id)
    except HFValidationError as exc:
        raise BundleError(f"text encoder location {location!r}: {repo_id!r} is not a valid "
                          f"Hugging Face hub id ({exc})") from exc
    if at and not revision:
        raise BundleError(f"text encoder location {location!r}: empty revision after '@'")
    return repo_id, revision or None


def _hub_fix(repo_id: str, revision: str) -> str:
    """How to put ``repo_id`` at ``revision`` into this machine's Hugging Face cache."""
    from huggingface_hub import constants
    from huggingface_hub.file_download import repo_folder_name

    folder = repo_folder_name(repo_id=repo_id, repo_type="model")
    return (f"fetch it on a connected machine with `hf download {repo_id} --revision "
            f"{revision}` (older huggingface_hub: `huggingface-cli download {repo_id} "
            f"--revision {revision}`) and copy that machine's cache folder {folder} into "
            f"the Hugging Face cache here ({constants.HF_HUB_CACHE}; HF_HUB_CACHE or HF_HOME "
            "set it)")


def resolve_hub(repo_id: str, revision: str | None = None) -> Path:
    """The snapshot folder of the Hugging Face model ``repo_id`` at ``revision`` (a commit,
    branch or tag; default ``main``) in the local cache. Nothing is downloaded; a model or
    revision not in the cache raises ``BundleError`` saying how to fetch it. The folder's
    name is the commit the revision resolved to."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import IncompleteSnapshotError

    wanted = revision or "main"
    try:
        folder = snapshot_download(repo_id, revision=wanted, local_files_only=True)
    except IncompleteSnapshotError as exc:
        # Files of the repository that were never fetched; the pin covers those that were.
        folder = exc.snapshot_path
    except OSError as exc:  # LocalEntryNotFoundError: no such model or revision cached
        raise BundleError(f"Hugging Face model {repo_id} at revision {wanted} is not in the "
                          f"local cache; {_hub_fix(repo_id, wanted)}") from exc
    return Path(folder)


def resolve_location(location: str) -> Path:
    """The folder of a text encoder location: a folder path, ``package:NAME/SUBDIR`` inside
    an installed Python package, or ``hf:ID[@REVISION]``, a Hugging Face model in the local
    cache (``resolve_hub``)."""
    hub = hub_location(location)
    if hub is not None:
        return resolve_hub(*hub)
    if location.startswith("package:"):
        package, _, sub = location.removeprefix("package:").partition("/")
        try:
            root = Path(str(importlib.resources.files(package)))
        except ModuleNotFoundError as exc:
            raise BundleError(f"external encoder package {package!r} is not installed") from exc
        return root / sub
    folder = Path(location).expanduser()
    if folder.is_dir():
        return folder
    try:
        hub_location(HUB_PREFIX + location)
        hint = f"a Hugging Face model is named hf:{location}"
    except BundleError:
        hint = "nor package:NAME/SUBDIR or hf:HUB_ID[@REVISION]"
    raise BundleError(f"text encoder location {location!r} is not a folder ({hint})")


def pin_folder(folder: Path) -> dict[str, str]:
    """SHA-256 of every file in ``folder`` and its subfolders by relative POSIX path
    (symbolic links followed, as in a Hugging Face cache snapshot; hidden subfolders and
    ``__pycache__`` skipped). Pins are checked by name, so older pins of the top-level
    files only still verify."""
    pins = {}
    for directory, subfolders, names in os.walk(folder):
        subfolders[:] = [d for d in subfolders if not d.startswith(".") and d != "__pycache__"]
        for name in names:
            file = Path(directory) / name
            if file.is_file():
                pins[file.relative_to(folder).as_posix()] = sha256_file(file)
    return dict(sorted(pins.items()))


def pin_location(location: str) -> dict[str, Any]:
    """The manifest's ``external`` entry for the encoder at ``location``: the SHA-256 of its
    files and, for ``hf:ID[@REVISION]``, the location ``hf:ID@COMMIT`` of the commit the
    revision resolved to."""
    folder = resolve_location(location)
    hub = hub_location(location)
    if hub is not None:
        location = f"{HUB_PREFIX}{hub[0]}@{folder.name}"
    return {"location": location, "files": pin_folder(folder)}


def verify_external(external: dict[str, Any]) -> Path:
    """Check every pinned file of an external text encoder; returns its folder. A hub
    model must be pinned to a commit, which is resolved from the local cache."""
    location = external["location"]
    hub = hub_location(location)
    if hub is None:
        folder = resolve_location(location)
        _verify_files(folder, external["files"], "external text encoder")
        return folder
    repo_id, revision = hub
    if revision is None or not COMMIT.fullmatch(revision):
        raise BundleError(f"external text encoder {location}: not pinned to a commit "
                          "(hf:ID@COMMIT, 40 hex digits)")
    folder = resolve_hub(repo_id, revision)
    _verify_files(folder, external["files"],
                  f"external text encoder {repo_id} at revision {revision}",
                  _hub_fix(repo_id, revision))
    return folder


def _verify_files(root: Path, pinned: dict[str, str], what: str, fix: str = "") -> None:
    hint = f"; {fix}" if fix else ""
    for name, expected in sorted(pinned.items()):
        file = root / name
        if not file.is_file():
            raise BundleError(f"{what}: file {file} is missing{hint}")
        if sha256_file(file) != expected:
            raise BundleError(f"{what}: file {file} does not match its SHA-256 in the manifest "
                              f"(altered or replaced){hint}")


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
        verify_external(external)
    return manifest
