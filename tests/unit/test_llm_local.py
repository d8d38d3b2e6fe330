"""Assembling the embedded GGUF from its parts: verified, atomic, reused; a mismatch is refused.
Uses small fake parts (the real 491 MB assembly is covered by the integration test)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from selfalign.errors import LLMError
from selfalign.llm import local
from selfalign.llm.config import ModelConfig


@pytest.fixture
def parts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    chunks = [bytes([i]) * (1000 + i) for i in range(6)]
    paths = []
    for i, c in enumerate(chunks, 1):
        p = tmp_path / f"part{i:02d}.bin"
        p.write_bytes(c)
        paths.append(p)
    whole = b"".join(chunks)
    monkeypatch.setattr(local, "_part_paths", lambda: paths)
    monkeypatch.setattr(local, "SIZE", len(whole))
    monkeypatch.setattr(local, "SHA256", hashlib.sha256(whole).hexdigest())
    return paths


def test_assembles_in_order_verifies_and_reuses(parts, tmp_path, monkeypatch):
    dest = local.embedded_model_path(tmp_path / "models")
    assert dest.read_bytes() == b"".join(p.read_bytes() for p in parts)
    assert dest.with_suffix(".verified").exists()

    def boom():
        raise AssertionError("parts read again although the file was verified")

    monkeypatch.setattr(local, "_part_paths", boom)
    assert local.embedded_model_path(tmp_path / "models") == dest
    assert sorted(x.name for x in dest.parent.iterdir()) == sorted(
        [dest.name, dest.with_suffix(".verified").name]
    )  # no temp files left behind


def test_a_changed_file_is_rehashed_and_rebuilt(parts, tmp_path):
    dest = local.embedded_model_path(tmp_path / "models")
    dest.write_bytes(b"tampered")  # size/mtime no longer match the marker
    assert local.embedded_model_path(tmp_path / "models").read_bytes() == b"".join(
        p.read_bytes() for p in parts
    )


def test_checksum_mismatch_is_refused(parts, tmp_path, monkeypatch):
    monkeypatch.setattr(local, "SHA256", "0" * 64)
    with pytest.raises(LLMError, match="does not match the pinned checksum"):
        local.embedded_model_path(tmp_path / "models")
    assert not any((tmp_path / "models").iterdir())  # nothing half-written, nothing kept


def test_missing_part_package_says_how_to_install(monkeypatch):
    monkeypatch.setattr(local, "PARTS", ["selfalign_no_such_part_pkg"])
    with pytest.raises(LLMError, match="pip install"):
        local._part_paths()


def test_model_path_must_exist(tmp_path):
    cfg = ModelConfig(provider="local", name="x", path=str(tmp_path / "nope.gguf"))
    with pytest.raises(LLMError, match="does not exist"):
        local.resolve_model_path(cfg)


def test_real_parts_are_installed():
    paths = local._part_paths()
    assert len(paths) == 6 and all(p.is_file() for p in paths)
    assert sum(p.stat().st_size for p in paths) == local.SIZE
