"""`correlator correlate --trace FILE [--logs FILE …] [--exemplars FILE]`: exported files, no server.

The files become the three sources of the ordinary `Correlator` (sources/files.py), so the join,
the analysis and the rendering are exactly the service's; only where the data comes from differs.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from correlator.config import Settings
from correlator.correlate import Correlator, Outcome
from correlator.errors import InvalidInput, SourceError
from correlator.ids import TraceId, parse_trace_id
from correlator.model import SourceStatus
from correlator.sources import SourceResult
from correlator.sources.files import (
    FileExemplarSource,
    FileLogSource,
    FileTraceSource,
    InputFile,
    other_traces,
    read_exemplars,
    read_logs,
    read_trace,
)

__all__ = ["correlate_files", "exit_code", "read_inputs"]


class _NotGiven(SourceError):
    status = SourceStatus.SKIPPED.value


class _Skipped:
    """A source for which no file was given: `skipped` in `sources`, not an empty success."""

    def __init__(self, name: str, option: str) -> None:
        self.name, self.option = name, option

    async def fetch(self, *_args: object, **_kwargs: object) -> SourceResult[tuple[()]]:
        raise _NotGiven(self.name, f"no {self.option} file given")


def read_inputs(paths: Sequence[str]) -> list[InputFile]:
    """The files' bytes; `-` is stdin (once). Unreadable files are input errors naming the file."""
    out: list[InputFile] = []
    stdin_used = False
    for path in paths:
        if path == "-":
            if stdin_used:
                raise InvalidInput("-", "stdin can be given only once")
            stdin_used = True
            out.append(InputFile("-", sys.stdin.buffer.read()))
            continue
        try:
            out.append(InputFile(path, Path(path).read_bytes()))
        except OSError as exc:
            raise InvalidInput(path, f"cannot read the file: {exc.strerror or exc}") from None
    return out


async def correlate_files(settings: Settings, trace_file: InputFile, log_files: Sequence[InputFile],
                          exemplar_files: Sequence[InputFile], trace_id: TraceId | None = None,
                          service: str | None = None) -> Outcome:
    """Read every file (raising FileFormatError on the first bad one), then correlate as the service does."""
    trace = read_trace(trace_file, trace_id)
    lines = [line for file in log_files for line in read_logs(file, service, settings.loki)]
    exemplars = [ex for file in exemplar_files for ex in read_exemplars(file, settings.prometheus)]
    logs_source = FileLogSource(lines, settings.loki) if log_files else _Skipped("loki", "--logs")
    exemplar_source = (FileExemplarSource(exemplars, settings.prometheus) if exemplar_files
                       else _Skipped("prometheus", "--exemplars"))
    # The clock only places the lookback window the file source ignores; the trace's own end keeps it meaningful.
    end_s = trace.end_ns / 1e9 if trace.spans else 0.0
    others = other_traces(trace_file, trace)
    correlator = Correlator(settings, FileTraceSource(trace, others or None), logs_source, exemplar_source,  # type: ignore[arg-type]
                            wall_clock=lambda: end_s)
    # The service's plan without a hint: the trace first, then logs and exemplars in its window.
    return await correlator.correlate(trace_id or parse_trace_id(trace.trace_id))


def exit_code(outcome: Outcome) -> int:
    """0 ok (sources without a file are `skipped`, not failures); 3 when a given file's source failed."""
    failed = [r for r in outcome.correlation.sources.values()
              if r.status not in (SourceStatus.OK, SourceStatus.NOT_FOUND, SourceStatus.SKIPPED)]
    return 3 if failed else 0
