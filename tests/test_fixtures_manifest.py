"""The fixtures stand alone and say where they come from: every upstream file is listed with its checksum."""

from __future__ import annotations

import hashlib
import re

from tests.conftest import FIXTURES

UPSTREAM = FIXTURES / "upstream"
LISTED = dict((path, digest) for digest, path in re.findall(r"^([0-9a-f]{64})  (\S+)$", (UPSTREAM / "README.md").read_text(), re.M))


def test_every_upstream_sample_is_listed_with_its_checksum() -> None:
    """A sample added without its origin and licence line, or edited after copying, fails here."""
    on_disk = {p.relative_to(UPSTREAM).as_posix() for p in UPSTREAM.rglob("*") if p.is_file() and p.parent != UPSTREAM}
    assert on_disk == set(LISTED)
    for path, digest in LISTED.items():
        assert hashlib.sha256((UPSTREAM / path).read_bytes()).hexdigest() == digest, path


def test_licence_and_attribution_ship_beside_the_samples() -> None:
    assert "Apache License" in (UPSTREAM / "LICENSE-Apache-2.0").read_text()
    notice = (UPSTREAM / "NOTICE").read_text()
    assert all(project in notice for project in ("Jaeger", "Prometheus", "Loki"))


def test_no_agpl_material() -> None:
    """Grafana's test data is AGPL-3.0-only: the repository carries none of it."""
    assert not (UPSTREAM / "grafana").exists()
    assert {p.name for p in UPSTREAM.iterdir() if p.is_dir()} == {"jaeger", "loki", "prometheus"}
