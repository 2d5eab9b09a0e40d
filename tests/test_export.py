"""The export format: checksums, foreign files, signatures, atomic replacement."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from infragym import components
from infragym.components import Component
from infragym.export import (
    MANIFEST_NAME,
    ExportError,
    _canonical,
    export_file,
    read_manifest,
    sha256_file,
    signing_key,
    verify_export,
    write_export,
)


class _Echo:
    def __init__(self, directory: Path, manifest: dict) -> None:
        self.payload = export_file(directory, manifest, "model.bin").read_bytes()
        self.manifest = manifest

    @classmethod
    def from_export(cls, directory: Path, manifest: dict) -> _Echo:
        return cls(directory, manifest)


@pytest.fixture(autouse=True)
def _echo_component() -> None:
    for name, code_bearing in (("echo", False), ("echo_pickle", True)):
        components.register(
            Component(
                name=name,
                summary="test component",
                task=f"{__name__}._Echo",
                experiments=(name,),
                loader=f"{__name__}:_Echo.from_export",
                code_bearing=code_bearing,
            )
        )
    yield
    for name in ("echo", "echo_pickle"):
        components.unregister(name)


def _write(path: Path, payload: bytes = b"weights-v1", requires_trust: bool = False) -> Path:
    return write_export(
        path,
        component="echo",
        files={"model.bin": payload},
        input_schema={"x": "float"},
        output_schema={"y": "float"},
        metrics={"test/mae": 1.5},
        config={"seed": 0},
        requires_trust=requires_trust,
    )


def test_manifest_has_everything(tmp_path: Path) -> None:
    export = _write(tmp_path / "export")
    manifest = read_manifest(export)
    assert manifest["component"] == "echo"
    assert manifest["format_version"] == 1
    assert manifest["metrics"] == {"test/mae": 1.5}
    assert {"python", "numpy", "infragym"} <= set(manifest["libraries"])
    assert len(manifest["files"]["model.bin"]["sha256"]) == 64
    from infragym import load

    assert load(export).payload == b"weights-v1"


def test_modified_file_is_refused(tmp_path: Path) -> None:
    export = _write(tmp_path / "export")
    (export / "model.bin").write_bytes(b"weights-evil")
    with pytest.raises(ExportError, match=r"model\.bin.*sha256.*does not match"):
        verify_export(export)


def test_foreign_file_and_missing_file_are_refused(tmp_path: Path) -> None:
    export = _write(tmp_path / "export")
    (export / "payload.pkl").write_bytes(b"x")
    with pytest.raises(ExportError, match=r"not listed.*payload\.pkl"):
        verify_export(export)
    (export / "payload.pkl").unlink()
    (export / "model.bin").unlink()
    with pytest.raises(ExportError, match=r"model\.bin.*missing"):
        verify_export(export)


def test_not_an_export_and_bad_manifest(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match=r"manifest\.json is missing"):
        verify_export(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ExportError, match="not valid JSON"):
        verify_export(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"format_version": 1}))
    with pytest.raises(ExportError, match="missing field"):
        verify_export(tmp_path)


def test_code_bearing_export_needs_our_signature_or_trust(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    export = _write(tmp_path / "export", requires_trust=True)
    verify_export(export)  # signed with this machine's key
    # Made elsewhere: another key signed it.
    monkeypatch.setenv("INFRAGYM_SIGNING_KEY", "ab" * 32)
    with pytest.raises(ExportError, match="trust=True"):
        verify_export(export)
    verify_export(export, trust=True)
    # Rewriting the manifest breaks the signature: checksums are refused even with trust.
    monkeypatch.delenv("INFRAGYM_SIGNING_KEY")
    manifest = json.loads((export / "manifest.json").read_text())
    manifest["files"]["model.bin"]["sha256"] = "0" * 64
    (export / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ExportError, match="does not match"):
        verify_export(export, trust=True)


def test_forged_manifest_cannot_switch_off_the_trust_check(tmp_path: Path) -> None:
    """An attacker rewrites everything consistently: new payload, its sha256, requires_trust
    false and a made-up signature. A code-bearing component is still refused without trust."""
    export = write_export(
        tmp_path / "export",
        component="echo_pickle",
        files={"model.bin": b"weights"},
        input_schema={},
        output_schema={},
        metrics={},
        config={},
    )
    verify_export(export)  # ours
    (export / "model.bin").write_bytes(b"evil pickle")
    manifest = json.loads((export / MANIFEST_NAME).read_text())
    manifest["files"]["model.bin"]["sha256"] = sha256_file(export / "model.bin")
    manifest["requires_trust"] = False
    manifest["signature"] = "f" * 64
    (export / MANIFEST_NAME).write_text(json.dumps(manifest))
    assert _canonical(manifest)  # well-formed
    with pytest.raises(ExportError, match="trust=True"):
        verify_export(export)
    from infragym import load

    with pytest.raises(ExportError, match="trust=True"):
        load(export)


def test_symlinks_are_refused(tmp_path: Path) -> None:
    export = _write(tmp_path / "export")
    (tmp_path / "elsewhere.bin").write_bytes(b"weights-v1")
    (export / "model.bin").unlink()
    (export / "model.bin").symlink_to(tmp_path / "elsewhere.bin")
    with pytest.raises(ExportError, match="symbolic links"):
        verify_export(export)


def test_loading_never_creates_a_signing_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    export = _write(tmp_path / "export", requires_trust=True)
    fresh_home = tmp_path / "service_home"
    monkeypatch.setenv("INFRAGYM_HOME", str(fresh_home))
    with pytest.raises(ExportError, match="trust=True"):
        verify_export(export)
    assert not fresh_home.exists()
    verify_export(export, trust=True)


def test_unknown_component_is_refused(tmp_path: Path) -> None:
    export = _write(tmp_path / "export")
    manifest = json.loads((export / "manifest.json").read_text())
    manifest["component"] = "os.system"
    (export / "manifest.json").write_text(json.dumps(manifest))
    from infragym import load

    with pytest.raises(ExportError, match="unknown"):
        load(export)


def test_crash_mid_export_leaves_previous_export_intact(tmp_path: Path) -> None:
    export = _write(tmp_path / "export", b"weights-v1")

    def crash(path: Path) -> None:
        path.write_bytes(b"half-writ")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_export(
            export,
            component="echo",
            files={"model.bin": crash},
            input_schema={},
            output_schema={},
            metrics={},
            config={},
        )
    verify_export(export)
    assert (export / "model.bin").read_bytes() == b"weights-v1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]  # no staging folder left
    # A successful re-export replaces it whole.
    _write(export, b"weights-v2")
    verify_export(export)
    assert (export / "model.bin").read_bytes() == b"weights-v2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]


def test_bad_file_names_are_refused(tmp_path: Path) -> None:
    for name in ("manifest.json", "../escape.bin", ".hidden"):
        with pytest.raises(ExportError, match="plain file name"):
            write_export(
                tmp_path / "e",
                component="echo",
                files={name: b"x"},
                input_schema={},
                output_schema={},
                metrics={},
                config={},
            )


@pytest.mark.parametrize(
    ("key", "message"),
    [("", "at least 32"), ("ab" * 16, "has 16 bytes"), ("not-hex", "hex string"), ("ab" * 31 + "a", "hex string")],
)
def test_weak_or_malformed_signing_key_file_is_refused(
    key: str, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An empty key file would make HMAC with an empty key a valid signature for anyone."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "signing.key").write_text(key)
    monkeypatch.setenv("INFRAGYM_HOME", str(home))
    with pytest.raises(ExportError, match=message) as err:
        signing_key(create=False)
    assert "signing.key" in str(err.value)
    # An export "signed" with the empty key is not loaded without trust: the key is refused first.
    with pytest.raises(ExportError, match=message):
        _write(tmp_path / "export", requires_trust=True)
    assert not (tmp_path / "export").exists()


def test_weak_signing_key_in_the_environment_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFRAGYM_SIGNING_KEY", "00" * 8)
    with pytest.raises(ExportError, match=r"INFRAGYM_SIGNING_KEY.*8 bytes"):
        signing_key()
    monkeypatch.setenv("INFRAGYM_SIGNING_KEY", "zz" * 32)
    with pytest.raises(ExportError, match=r"INFRAGYM_SIGNING_KEY.*hex"):
        signing_key()


def test_pickle_signed_with_an_empty_key_is_not_loaded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The attack: sign a pickle export's manifest with HMAC(key=b""), plant an empty key file."""
    import hashlib
    import hmac

    export = _write(tmp_path / "export", requires_trust=True)
    manifest = json.loads((export / MANIFEST_NAME).read_text())
    manifest["signature"] = hmac.new(b"", _canonical(manifest), hashlib.sha256).hexdigest()
    (export / MANIFEST_NAME).write_text(json.dumps(manifest))
    home = tmp_path / "victim"
    home.mkdir()
    (home / "signing.key").write_text("")
    monkeypatch.setenv("INFRAGYM_HOME", str(home))
    from infragym import load

    with pytest.raises(ExportError, match="at least 32"):
        load(export)


@pytest.mark.parametrize("name", ["../outside.bin", "/etc/hostname", "sub/model.bin", ".hidden", "unlisted.bin", 3])
def test_loaders_open_only_listed_plain_names(name: object, tmp_path: Path) -> None:
    export = _write(tmp_path / "export")
    manifest = verify_export(export)
    (tmp_path / "outside.bin").write_bytes(b"secret")
    with pytest.raises(ExportError, match=r"plain file name|not listed"):
        export_file(export, manifest, name)
    assert export_file(export, manifest, "model.bin").read_bytes() == b"weights-v1"
