"""Export and load: the deployable checkpoint format.

An export is a folder::

    export/
      manifest.json      format version, component, library versions, input/output schema,
                         metrics, resolved config, sha256 of every file, HMAC signature
      <model files>      ONNX for neural networks, the estimator's own persistence otherwise

``load(path)`` verifies the manifest, the checksum of every listed file and that no unlisted
file sits in the folder, then hands the folder to the component's loader. Loaders are looked
up in the component registry (``infragym.components``): a manifest never names code to import,
and loaders open only files listed in the verified manifest (``export_file``).

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
import json
import os
import platform
import re
import secrets
import shutil
import socket
import time
import uuid
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from importlib import metadata
from pathlib import Path
from typing import Any

from infragym import components
from infragym.components import Component
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

FileContent = bytes | Callable[[Path], None]

# HMAC-SHA256 keys shorter than the hash's output weaken the signature (RFC 2104, sec. 3); an
# empty key would make every forged "signature" valid.
MIN_KEY_BYTES = 32


class ExportError(RuntimeError):
    """An export that cannot be written, verified or trusted."""


def _component(name: object, where: str) -> Component:
    if not isinstance(name, str):
        raise ExportError(f"{where}: field 'component' must be a string, got {type(name).__name__}")
    try:
        return components.get(name)
    except components.ComponentError as err:
        raise ExportError(f"{where}: {err}") from err


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


def _parse_key(text: str, source: str) -> bytes:
    try:
        key = bytes.fromhex(text.strip())
    except ValueError as err:
        raise ExportError(f"{source}: the signing key must be a hex string ({err})") from err
    if len(key) < MIN_KEY_BYTES:
        raise ExportError(
            f"{source}: the signing key has {len(key)} bytes; at least {MIN_KEY_BYTES} are required "
            f"({2 * MIN_KEY_BYTES} hex digits, e.g. `python -c 'import secrets; print(secrets.token_hex(32))'`)"
        )
    return key


def signing_key(*, create: bool = True) -> bytes | None:
    """This machine's signing key: ``INFRAGYM_SIGNING_KEY`` (hex) or the key file, made on first
    export (``create``). Loading never creates one: without a key nothing verifies as ours.
    A key that is not hex or shorter than 32 bytes is refused, never used."""
    env_key = os.environ.get("INFRAGYM_SIGNING_KEY")
    if env_key is not None and env_key != "":
        return _parse_key(env_key, "INFRAGYM_SIGNING_KEY")
    path = infragym_home() / "signing.key"
    if not path.exists():
        if not create:
            return None
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".signing.key.{uuid.uuid4().hex}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(MIN_KEY_BYTES))
        try:
            os.link(tmp, path)  # fails if another process created the key first
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise ExportError(f"{path}: cannot read the signing key ({err})") from err
    return _parse_key(text, str(path))


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


# Staging and backup folders of an export are named after their writer (host and process), so
# that the next export can tell a killed writer's leftovers from a concurrent writer's work.
_HOST = re.sub(r"[^A-Za-z0-9_]", "_", socket.gethostname())[:40] or "host"
_LEFTOVER = re.compile(r"^\.(?P<name>.+)\.(?:tmp|old)-(?:(?P<host>[A-Za-z0-9_]+)-(?P<pid>\d+)-)?[0-9a-f]{8}$")
# A leftover whose writer cannot be checked (another host, or the older unnamed form) is removed
# once it is this old: no export takes a day to write.
STALE_AFTER_S = 24 * 3600.0


def _writer_tag() -> str:
    return f"{_HOST}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def clean_stale_staging(directory: str | os.PathLike[str]) -> list[Path]:
    """Remove what killed exports of ``directory`` left beside it (hidden staging and backup
    folders): those of dead processes on this host, and any older than ``STALE_AFTER_S``.
    Returns the removed paths."""
    directory = Path(directory)
    if not directory.parent.is_dir():
        return []
    removed = []
    now = time.time()
    for path in directory.parent.iterdir():
        match = _LEFTOVER.match(path.name)
        if match is None or match["name"] != directory.name or not path.is_dir() or path.is_symlink():
            continue
        if match["host"] == _HOST and match["pid"] is not None:
            stale = int(match["pid"]) != os.getpid() and not _alive(int(match["pid"]))
        else:
            try:
                stale = now - path.stat().st_mtime > STALE_AFTER_S
            except OSError:
                continue
        if stale:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def _replace_dir(new: Path, target: Path) -> None:
    if not target.exists():
        os.rename(new, target)
        return
    if _exchange_dirs(new, target):
        shutil.rmtree(new)  # ``new`` now holds the previous export
        return
    backup = target.with_name(f".{target.name}.old-{_writer_tag()}")
    os.rename(target, backup)
    os.rename(new, target)
    shutil.rmtree(backup)


_RUN_ID: ContextVar[str | None] = ContextVar("infragym_export_run_id", default=None)


@contextmanager
def export_run(run_id: str) -> Iterator[None]:
    """Exports written inside this block record ``run_id`` (field ``run_id`` of the manifest,
    covered by the signature): ``infragym train`` sets it to the run's id, so an export that
    another run's metrics sit next to can be told apart (``export_run_mismatch``)."""
    token = _RUN_ID.set(run_id)
    try:
        yield
    finally:
        _RUN_ID.reset(token)


RUN_RECORD = "run.json"


def export_run_mismatch(directory: str | os.PathLike[str]) -> str | None:
    """A sentence saying that the run folder around export ``directory`` holds another run's
    metrics than the export's (an export that failed after the metrics were written leaves the
    previous export in place), or None when they belong together or nothing says otherwise."""
    directory = Path(directory)
    record_path = directory.parent / RUN_RECORD
    try:
        record = json.loads(record_path.read_text())
        manifest = json.loads((directory / MANIFEST_NAME).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or not isinstance(manifest, dict) or "run_id" not in record:
        return None
    exported = manifest.get("run_id")
    if exported == record["run_id"]:
        return None
    return (
        f"{directory} was exported by run {exported or '(unrecorded)'}, but {record_path.parent}'s metrics.json "
        f"and results are run {record['run_id']}'s (status: {record.get('status', 'unknown')}): the run folder's "
        "metrics do not describe this export"
    )


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
    record = _component(component, str(directory))
    if record.loader is None:
        raise ExportError(f"{directory}: component {component!r} declares no export loader")
    for name in files:
        if name == MANIFEST_NAME or Path(name).name != name or name.startswith("."):
            raise ExportError(f"export file name {name!r} must be a plain file name, not the manifest")
    directory.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_staging(directory)
    staging = directory.with_name(f".{directory.name}.tmp-{_writer_tag()}")
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
            "requires_trust": bool(requires_trust or record.code_bearing),
        }
        if _RUN_ID.get() is not None:
            manifest["run_id"] = _RUN_ID.get()  # which training run made it (``export_run``)
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
    code_bearing = (
        manifest["requires_trust"] is not False or _component(manifest["component"], str(directory)).code_bearing
    )
    if code_bearing and not trust and not _signed_here(manifest):
        raise ExportError(
            f"{directory}: the export holds pickled estimators (they run code when loaded) and "
            "its signature does not match this machine's key (INFRAGYM_SIGNING_KEY or "
            f"{infragym_home() / 'signing.key'}). Load it only if you trust its origin: "
            "infragym.load(path, trust=True)"
        )
    return manifest


def export_file(directory: str | os.PathLike[str], manifest: Mapping[str, Any], name: object) -> Path:
    """The path of the export file ``name``: the only way a loader opens a file of an export.

    ``name`` must be listed in the verified manifest and be a plain file name inside the folder
    (no separator, no ``..``, not hidden), so a file that names another file (an index, a spec)
    can never make a loader read from outside the export.
    """
    directory = Path(directory)
    files = manifest.get("files")
    if not isinstance(name, str) or not name or Path(name).name != name or name.startswith(".") or "\\" in name:
        raise ExportError(f"{directory}: {name!r} is not a plain file name of this export")
    if not isinstance(files, Mapping) or name not in files:
        raise ExportError(f"{directory}: {name!r} is not listed in the export's manifest")
    path = directory / name
    if path.is_symlink() or not path.is_file():
        raise ExportError(f"{path}: listed in the manifest but not a regular file in the export")
    return path


def load_export(path: str | os.PathLike[str], *, trust: bool = False) -> tuple[Any, dict[str, Any]]:
    """Verify an export folder and load it: the component's predictor and the verified manifest."""
    directory = Path(path)
    manifest = verify_export(directory, trust=trust)
    record = _component(manifest["component"], str(directory))
    if record.loader is None:
        raise ExportError(f"{directory}: component {record.name!r} declares no export loader")
    libraries = manifest["libraries"] if isinstance(manifest["libraries"], dict) else {}
    current = library_versions(tuple(str(name) for name in libraries))
    for name, version in libraries.items():
        if name != "python" and current.get(name) != version:
            warnings.warn(
                f"{directory}: exported with {name} {version}, loading with {current.get(name)}",
                stacklevel=3,
            )
    return record.resolve_loader()(directory, manifest), manifest


def load(path: str | os.PathLike[str], *, trust: bool = False) -> Any:
    """Load an export folder after verifying it; returns the component's predictor.

    Args:
        path: the ``export/`` folder.
        trust: load code-bearing files (pickles) even if the export was not signed with this
            machine's key. Checksums are verified either way.
    """
    return load_export(path, trust=trust)[0]
