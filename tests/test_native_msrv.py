"""The native crate keeps the Rust version it promises (`rust-version` in native/Cargo.toml).

No toolchain that old is installed here, so this checks what can be checked with today's: every locked crate
asks for no newer Rust, and clippy's `incompatible_msrv` finds no standard-library API newer than the promise.
A distribution that builds the extension with an older rustc (Debian's, say) would otherwise fail to build it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

NATIVE = Path(__file__).resolve().parent.parent / "native"


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(".")[:3])


def _promised() -> tuple[int, ...]:
    with (NATIVE / "Cargo.toml").open("rb") as manifest:
        return _version(tomllib.load(manifest)["package"]["rust-version"])


def _cargo() -> str:
    cargo = shutil.which("cargo") or str(Path(os.environ.get("CARGO_HOME", Path.home() / ".cargo")) / "bin" / "cargo")
    if not Path(cargo).exists():
        pytest.skip("no cargo here (the native extension's own tests say whether it was built)")
    return cargo


def test_every_locked_crate_builds_with_the_promised_rust() -> None:
    metadata = subprocess.run([_cargo(), "metadata", "--format-version", "1", "--locked", "--quiet"], cwd=NATIVE,
                              capture_output=True, text=True, timeout=300, check=True)
    promised = _promised()
    too_new = {f"{package['name']} {package['version']}": package["rust_version"]
               for package in json.loads(metadata.stdout)["packages"]
               if package.get("rust_version") and _version(package["rust_version"]) > promised}
    assert not too_new, f"locked crates need a newer Rust than native/Cargo.toml's rust-version: {too_new}"


def test_no_standard_library_api_newer_than_the_promise(tmp_path: Path) -> None:
    cargo = _cargo()
    if subprocess.run([cargo, "clippy", "--version"], capture_output=True, timeout=60).returncode != 0:
        pytest.skip("no clippy in this toolchain")
    lint = subprocess.run([cargo, "clippy", "--locked", "--quiet", "--", "-A", "clippy::all", "-D", "clippy::incompatible_msrv"],
                          cwd=NATIVE, capture_output=True, text=True, timeout=900,
                          env={**os.environ, "CARGO_TARGET_DIR": str(tmp_path / "target")})
    assert lint.returncode == 0, lint.stderr[-4000:]
