"""The human report (`correlator correlate ID`, `?format=text`): what an SRE reads at 3 a.m.

Order: the verdict first (findings), then the seed-style tree, then the log lines, then
which sources answered, so a partial answer is never mistaken for a complete one.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from correlator.analysis import Analysis
from correlator.config import Settings
from correlator.correlate import Outcome
from correlator.render import log_entries
from correlator.text_tree import render_tree

__all__ = ["render_text"]

_MAX_LOG_LINES = 50


def render_text(outcome: Outcome, body: dict[str, Any]) -> str:
    c, tree = outcome.correlation, outcome.tree
    out: list[str] = [f"Trace {c.trace_id}"]
    summary = body["summary"]
    if tree is not None:
        out.append(
            f"{summary['root_service']}: {summary['root_operation']} — {summary['duration_ms']}ms, "
            f"{summary['span_count']} spans, {len(summary['services'])} services, "
            f"{summary['error_count']} errors, {summary['log_count']} logs, {summary['exemplar_count']} exemplars"
        )
    else:
        jaeger = body["sources"].get("jaeger", {})
        if jaeger.get("status") in ("ok", "not_found"):
            where = "trace not found in Jaeger"
        else:
            where = f"Jaeger could not be asked ({jaeger.get('status')}: {jaeger.get('error') or 'no detail'})"
        out.append(f"{where}; {summary['log_count']} logs, {summary['exemplar_count']} exemplars")
    if body.get("availability"):
        out.append(f"Note: {body['availability']}")
    if body.get("standing"):
        out.append(f"Where it stands: {body['standing']['message']}")
    if c.findings:
        out.append("")
        out.append("Findings:")
        for f in c.findings:
            out.append(f"  [{f.severity.value}] {f.message}")
    if tree is not None:
        log_counts = Counter(p.span_id for p in c.log_placements if p.span_id)
        exemplar_counts = Counter(p.span_id for p in c.exemplar_placements if p.span_id)
        out.append("")
        out.append(render_tree(tree, Analysis(c.critical_path, c.findings), log_counts, exemplar_counts,
                               title=f"Request: {summary['root_operation']}"))
    logs = log_entries(body, c)  # the body may hold their JSON (lines_as_json)
    if logs:
        out.append("")
        inferred = summary["inferred_log_count"]
        extra = f", {inferred} without a trace ID attached by time (inferred)" if inferred else ""
        out.append(f"Logs ({len(logs) - inferred}{extra}):")
        for entry in logs[:_MAX_LOG_LINES]:
            where = entry["span_id"] or "trace"
            how = f"inferred, {entry['confidence']}" if entry["match"] == "inferred" else entry["match"]
            out.append(f"  {entry['timestamp']} {entry['service'] or '-'} [{entry['level'] or '-'}] "
                       f"({how}→{where}) {entry['line']}")
        if len(logs) > _MAX_LOG_LINES:
            out.append(f"  … {len(logs) - _MAX_LOG_LINES} more (use --json)")
    if body["exemplars"]:
        out.append("")
        out.append(f"Exemplars ({len(body['exemplars'])}):")
        for ex in body["exemplars"][:_MAX_LOG_LINES]:
            out.append(f"  {ex['timestamp']} {ex['metric']} = {ex['value']} ({ex['match']}→{ex['span_id'] or 'trace'})")
    out.append("")
    out.append("Sources:")
    for name, src in body["sources"].items():
        extra = f" — {src['error']}" if src["error"] else ""
        cut = " (truncated)" if src["truncated"] else ""
        out.append(f"  {name}: {src['status']}, {src['items']} items, {src['ms']}ms{cut}{extra}")
        if src.get("cut"):
            out.append(f"    cut: {src['cut']}")
    if body.get("warnings"):
        out.append("")
        out.append("Warnings:")
        out.extend(f"  {warning}" for warning in body["warnings"])
    links = _configured_links(body["links"])
    if links:
        out.append("")
        out.extend(links)
    return "\n".join(out) + "\n"


_DEFAULTS = Settings()
_DEFAULT_BASES = {"jaeger": (_DEFAULTS.jaeger.url.rstrip("/") + "/"), "grafana": (_DEFAULTS.grafana.url.rstrip("/") + "/")}


def _configured_links(links: dict[str, str]) -> list[str]:
    """Link lines only for UIs someone configured: a built-in localhost default may point at nothing."""
    out = []
    if not links["jaeger"].startswith(_DEFAULT_BASES["jaeger"]):
        out.append(f"Jaeger:  {links['jaeger']}")
    if not links["grafana"].startswith(_DEFAULT_BASES["grafana"]):
        out.append(f"Grafana: {links['grafana']}")
    return out
