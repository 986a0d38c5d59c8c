"""merge.py rebuilds findings field by field (faster than dataclasses.replace): no field may be lost."""

from __future__ import annotations

from dataclasses import fields, replace

from correlator.analysis.merge import _with_evidence
from correlator.model import Finding, Severity


def test_with_evidence_keeps_every_other_field() -> None:
    finding = Finding("fan_out", Severity.WARNING, "five calls at once", ("a", "b"), {"x": 1}, impact_ns=7)
    # Every field must differ from its default, so a field added to Finding and forgotten here shows.
    for f in fields(Finding):
        assert getattr(finding, f.name) not in (None, (), {}, 0, ""), f"give {f.name} a non-default value in this test"
    assert _with_evidence(finding, {"quotes": []}) == replace(finding, evidence={"quotes": []})
    assert [f.name for f in fields(Finding)] == ["kind", "severity", "message", "span_ids", "evidence", "impact_ns"]
