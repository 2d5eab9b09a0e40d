"""Export and load: the deployable checkpoint format.

An export is a folder::

    export/
      manifest.json      format version, component, library versions, input/output schema,
                         metrics, resolved config, sha256 of every file, HMAC signature
      <model files>      ONNX for neural networks, the estimator's own persistence otherwise

``load(path)`` verifies the manifest, the checksum of every listed file and that no unlisted
file sits in the folder, then hands the folder to the component's loader. Loaders are looked
up in a registry of InfraGym's own modules: a manifest never names code to import.

Pickle-based files (econml, scikit-learn) run code when loaded. They are loaded only when the
manifest carries a valid signature made with this machine's key (``INFRAGYM_SIGNING_KEY``, or
the key file under ``INFRAGYM_HOME``, default ``~/.config/infragym``), i.e. the export was made
here or by a machine that shares the key, or when the caller passes ``trust=True``.
Writes are atomic: the export is written to a temporary sibling folder and swapped in, so a
crash mid-export leaves the previous export intact.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import hmac
import importlib
import json
import os
import platform
import secrets
import shutil
import uuid
import warnings
from collections.abc import Callable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from infragym.io import atomic_write_bytes

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
REQUIRED_FIELDS = (
    "format_version",
    "component",
    "libraries",
    "input_schema",
    "output_schema",
    "metrics",
    "config",
    "files",
    "requires_trust",
    "signature",
)

# component name -> "module:callable(directory, manifest) -> predictor". InfraGym's own code only.
COMPONENT_LOADERS: dict[str, str] = {
    "deoxys": "infragym.models.deoxys.export:DeoxysPredictor.from_export",
    "continuum": "infragym.models.continuum.export:ContinuumPredictor.from_export",
    "vm2rl": "infragym.models.vm2rl.export:VM2RLPredictor.from_export",
    "cloudformer": "infragym.models.cloudformer.export:CloudFormerPredictor.from_export",
}
# Components whose loader unpickles files (runs code): they need a valid signature or
# ``trust=True`` whatever the manifest says about itself.
CODE_BEARING_COMPONENTS: set[str] = {"deoxys"}

FileContent = bytes | Callable[[Path], None]


class ExportError(RuntimeError):
    """An export that cannot be written, verified or trusted."""


def register_loader(component: str, target: str, *, code_bearing: bool) -> None:
    """Register ``module:callable`` as the loader of ``component`` (for extensions).

    ``code_bearing``: the loader unpickles (or otherwise executes) file contents.
    """
    if ":" not in target:
        raise ValueError(f"loader target must look like 'module:callable', got {target!r}")
    COMPONENT_LOADERS[component] = target
    if code_bearing:
        CODE_BEARING_COMPONENTS.add(component)
    else:
        CODE_BEARING_COMPONENTS.discard(component)


def sha256_file(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def library_versions(names: tuple[str, ...] = ()) -> dict[str, str]:
    base = ("infragym", "numpy", "pandas", "scikit-learn", *names)
    versions = {"python": platform.python_version()}
    for name in dict.fromkeys(base):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


# --------------------------------------------------------------------------- signing
def infragym_home() -> Path:
    return Path(os.environ.get("INFRAGYM_HOME", Path.home() / ".config" / "infragym"))


def signing_key(*, create: bool = True) -> bytes | None:
    """This machine's signing key: ``INFRAGYM_SIGNING_KEY`` (hex) or the key file, made on first
    export (``create``). Loading never creates one: without a key nothing verifies as ours."""
    env_key = os.environ.get("INFRAGYM_SIGNING_KEY")
    if env_key:
        try:
            return bytes.fromhex(env_key)
        except ValueError as err:
            raise ExportError("INFRAGYM_SIGNING_KEY must be a hex string") from err
    path = infragym_home() / "signing.key"
    if not path.exists():
        if not create:
            return None
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".signing.key.{uuid.uuid4().hex}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(32))
        try:
            os.link(tmp, path)  # fails if another process created the key first
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)
    return bytes.fromhex(path.read_text().strip())


def _canonical(manifest: Mapping[str, Any]) -> bytes:
    body = {k: v for k, v in manifest.items() if k != "signature"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def _sign(manifest: Mapping[str, Any]) -> str:
    key = signing_key()
    assert key is not None
    return hmac.new(key, _canonical(manifest), hashlib.sha256).hexdigest()


def _signed_here(manifest: Mapping[str, Any]) -> bool:
    key = signing_key(create=False)
    if key is None:
        return False
    expected = hmac.new(key, _canonical(manifest), hashlib.sha256).hexdigest()
    return hmac.compare_digest(str(manifest["signature"]), expected)


# --------------------------------------------------------------------------- writing
def _exchange_dirs(a: Path, b: Path) -> bool:
    """Atomically swap two folders (Linux renameat2 RENAME_EXCHANGE). False if unsupported."""
    if platform.system() != "Linux":
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        return False
    at_fdcwd, rename_exchange = -100, 2
    result = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange)
    return result == 0


def _replace_dir(new: Path, target: Path) -> None:
    if not target.exists():
        os.rename(new, target)
        return
    if _exchange_dirs(new, target):
        shutil.rmtree(new)  # ``new`` now holds the previous export
        return
    backup = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
    os.rename(target, backup)
    os.rename(new, target)
    shutil.rmtree(backup)


def write_export(
    directory: str | os.PathLike[str],
    *,
    component: str,
    files: Mapping[str, FileContent],
    input_schema: Mapping[str, Any],
    output_schema: Mapping[str, Any],
    metrics: Mapping[str, float],
    config: Mapping[str, Any],
    libraries: tuple[str, ...] = (),
    requires_trust: bool = False,
) -> Path:
    """Write an export folder atomically and return its path.

    ``files`` maps a file name to its bytes or to a callable that writes it at a given path.
    ``requires_trust`` marks exports whose files run code when loaded (pickles).
    """
    directory = Path(directory)
    if component not in COMPONENT_LOADERS:
        raise ExportError(f"component {component!r} has no registered loader")
    for name in files:
        if name == MANIFEST_NAME or Path(name).name != name or name.startswith("."):
            raise ExportError(f"export file name {name!r} must be a plain file name, not the manifest")
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = directory.with_name(f".{directory.name}.tmp-{uuid.uuid4().hex[:8]}")
    staging.mkdir()
    try:
        checksums: dict[str, dict[str, Any]] = {}
        for name, content in files.items():
            path = staging / name
            if isinstance(content, bytes):
                atomic_write_bytes(path, content)
            else:
                content(path)
            if not path.is_file():
                raise ExportError(f"writer for {name!r} did not create the file")
            checksums[name] = {"sha256": sha256_file(path), "bytes": path.stat().st_size}
        manifest: dict[str, Any] = {
            "format_version": FORMAT_VERSION,
            "component": component,
            "libraries": library_versions(libraries),
            "input_schema": dict(input_schema),
            "output_schema": dict(output_schema),
            "metrics": {k: float(v) for k, v in metrics.items()},
            "config": dict(config),
            "files": checksums,
            "requires_trust": bool(requires_trust or component in CODE_BEARING_COMPONENTS),
        }
        manifest["signature"] = _sign(manifest)
        atomic_write_bytes(staging / MANIFEST_NAME, (json.dumps(manifest, indent=2) + "\n").encode())
        _replace_dir(staging, directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return directory


# --------------------------------------------------------------------------- reading
def read_manifest(directory: str | os.PathLike[str]) -> dict[str, Any]:
    directory = Path(directory)
    path = directory / MANIFEST_NAME
    if not directory.is_dir():
        raise ExportError(f"{directory}: not an export folder (no such directory)")
    if not path.is_file():
        raise ExportError(f"{directory}: not an InfraGym export ({MANIFEST_NAME} is missing)")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ExportError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(manifest, dict):
        raise ExportError(f"{path}: expected a JSON object")
    missing = [f for f in REQUIRED_FIELDS if f not in manifest]
    if missing:
        raise ExportError(f"{path}: missing field(s) {missing}")
    if manifest["format_version"] != FORMAT_VERSION:
        raise ExportError(
            f"{path}: format_version {manifest['format_version']!r} is not supported "
            f"(this InfraGym reads version {FORMAT_VERSION})"
        )
    if not isinstance(manifest["files"], dict) or not manifest["files"]:
        raise ExportError(f"{path}: field 'files' must be a non-empty mapping")
    return manifest


def verify_export(directory: str | os.PathLike[str], *, trust: bool = False) -> dict[str, Any]:
    """Check manifest, checksums, unlisted files and (for code-bearing files) the signature."""
    directory = Path(directory)
    manifest = read_manifest(directory)
    listed = set(manifest["files"])
    links = sorted(p.name for p in directory.iterdir() if p.is_symlink())
    if links:
        raise ExportError(f"{directory}: symbolic links are not allowed in an export: {links}")
    present = {p.name for p in directory.iterdir() if p.name != MANIFEST_NAME}
    foreign = sorted(present - listed)
    if foreign:
        raise ExportError(f"{directory}: file(s) not listed in the manifest: {foreign}")
    for name, entry in manifest["files"].items():
        path = directory / name
        if Path(name).name != name:
            raise ExportError(f"{directory}: manifest lists a path outside the export: {name!r}")
        if not path.is_file():
            raise ExportError(f"{path}: listed in the manifest but missing")
        digest = sha256_file(path)
        if not isinstance(entry, dict) or digest != entry.get("sha256"):
            raise ExportError(
                f"{path}: sha256 {digest} does not match the manifest; the file was modified "
                "or does not belong to this export"
            )
    # Whether files run code is decided by the registry, never by the manifest's own claim.
    code_bearing = bool(manifest["requires_trust"]) or manifest["component"] in CODE_BEARING_COMPONENTS
    if code_bearing and not trust and not _signed_here(manifest):
        raise ExportError(
            f"{directory}: the export holds pickled estimators (they run code when loaded) and "
            "its signature does not match this machine's key (INFRAGYM_SIGNING_KEY or "
            f"{infragym_home() / 'signing.key'}). Load it only if you trust its origin: "
            "infragym.load(path, trust=True)"
        )
    return manifest


def _resolve(target: str) -> Callable[..., Any]:
    module_name, _, attr_path = target.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in attr_path.split("."):
        obj = getattr(obj, part)
    return obj


def load(path: str | os.PathLike[str], *, trust: bool = False) -> Any:
    """Load an export folder after verifying it; returns the component's predictor.

    Args:
        path: the ``export/`` folder.
        trust: load code-bearing files (pickles) even if the export was not signed with this
            machine's key. Checksums are verified either way.
    """
    directory = Path(path)
    manifest = verify_export(directory, trust=trust)
    component = manifest["component"]
    if component not in COMPONENT_LOADERS:
        raise ExportError(f"{directory}: component {component!r} is unknown (known: {sorted(COMPONENT_LOADERS)})")
    current = library_versions(tuple(manifest["libraries"]))
    for name, version in manifest["libraries"].items():
        if name != "python" and current.get(name) != version:
            warnings.warn(
                f"{directory}: exported with {name} {version}, loading with {current.get(name)}",
                stacklevel=2,
            )
    return _resolve(COMPONENT_LOADERS[component])(directory, manifest)
