"""Malformed input: each repair `build_tree` made becomes a finding, so nobody trusts a bent tree blindly."""

from __future__ import annotations

from correlator.model import Finding, Severity
from tests.reference.analysis_v2.common import Context

__all__ = ["malformed"]


def malformed(ctx: Context) -> list[Finding]:
    by_id = ctx.tree.by_id
    out = []
    for problem in ctx.tree.problems:
        named = tuple(dict.fromkeys(w.strip(".,;:()") for w in problem.split() if w.strip(".,;:()") in by_id))
        out.append(Finding("malformed", Severity.WARNING, problem, named, {"problem": problem}))
    return out
