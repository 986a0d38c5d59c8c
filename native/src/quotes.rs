//! A finding's quotes, natively (issue 14, P3: `merge` quotes every finding of a small trace, ~25 quote dicts per
//! correlation, a fifth of the analysis's instructions in Python).
//!
//! `correlator/analysis/events.py`'s `_quotes_python` is the reference: the events and the earliest log lines of the
//! finding's spans (read until `4 × max_quotes` items were seen), stably sorted by time, the first `max_quotes` of them
//! as `{"span_id", "source": "event", "offset_ms", "text"}` or `{"span_id", "source": "log", "level", "offset_ms",
//! "text"}` dicts. An event's text is Python's own `event_text`. Anything unexpected — `spans` not a list, `logs` not
//! a dict, events or lines not a list or tuple, a time that is not an exact 64-bit `int`, an offset `round` must
//! decide (negative, a tie, beyond 2⁵⁰ ns), a line that is not an exact `str`, an attribute that cannot be read —
//! → `None`, and Python quotes the finding as before (raising what it raises).
//!
//! tests/test_quotes_native.py compares the two on generated spans and lines, and on recorded traces.

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString, PyTuple};
use pyo3::{intern, wrap_pyfunction};

use crate::analysis::Slot;

const EXACT_NS: i128 = 1 << 50;

/// A 64-bit value of an exact `int`, else None.
fn exact_i64(value: &Bound<'_, PyAny>) -> Option<i64> {
    unsafe {
        if ffi::PyLong_CheckExact(value.as_ptr()) == 0 {
            return None;
        }
        let mut overflow: std::os::raw::c_int = 0;
        let n = ffi::PyLong_AsLongLongAndOverflow(value.as_ptr(), &mut overflow);
        if overflow != 0 || (n == -1 && !ffi::PyErr_Occurred().is_null()) {
            ffi::PyErr_Clear();
            return None;
        }
        Some(n)
    }
}

/// The items of an exact list or tuple (new references), else None. Read by index, as iterating them gives them: no
/// iterator and no length hint per span (two calls per span of every finding).
fn items<'py>(value: &Bound<'py, PyAny>) -> Option<Vec<Bound<'py, PyAny>>> {
    let (py, ptr) = (value.py(), value.as_ptr());
    unsafe {
        if ffi::PyList_CheckExact(ptr) != 0 {
            let n = ffi::PyList_GET_SIZE(ptr);
            return Some((0..n).map(|i| Bound::from_borrowed_ptr(py, ffi::PyList_GET_ITEM(ptr, i))).collect());
        }
        if ffi::PyTuple_CheckExact(ptr) != 0 {
            let n = ffi::PyTuple_GET_SIZE(ptr);
            return Some((0..n).map(|i| Bound::from_borrowed_ptr(py, ffi::PyTuple_GET_ITEM(ptr, i))).collect());
        }
    }
    None
}

/// `getattr(obj, name)`, or None with the error cleared (Python raises it again on its own path).
fn attr<'py>(obj: &Bound<'py, PyAny>, name: &Bound<'py, PyString>) -> Option<Bound<'py, PyAny>> {
    obj.getattr(name).ok()
}

/// The attributes `quote` reads, each at its slot where `getattr` would read exactly that (analysis.rs `Slot`): no
/// attribute look-up per span and line. Made once per call, shared by a `quote_findings` call's findings.
struct Names<'py> {
    events: Slot<'py>,
    span_id: Slot<'py>,
    time: Slot<'py>,
    stamp: Slot<'py>,
    level: Slot<'py>,
    line: Slot<'py>,
}

impl<'py> Names<'py> {
    fn new(py: Python<'py>) -> Self {
        Names { events: Slot::new(py, "events"), span_id: Slot::new(py, "span_id"), time: Slot::new(py, "time_ns"),
                stamp: Slot::new(py, "timestamp_ns"), level: Slot::new(py, "level"), line: Slot::new(py, "line") }
    }
}

/// `getattr(obj, name)` through its slot, or None (the error dropped: Python raises it again on its own path).
fn read<'py>(slot: &mut Slot<'py>, obj: &Bound<'py, PyAny>) -> Option<Bound<'py, PyAny>> {
    slot.get(obj.as_ptr()).ok()
}

struct Item<'py> {
    at: i64,
    span: usize,
    item: Bound<'py, PyAny>,
}

/// The positions of the `count` first lines by (time, place), in their own order (`events._earliest`).
fn earliest(stamps: &[i64], count: usize) -> Vec<usize> {
    if stamps.len() <= count {
        return (0..stamps.len()).collect();
    }
    if stamps.windows(2).all(|w| w[0] <= w[1]) {
        return (0..count).collect();
    }
    let mut order: Vec<usize> = (0..stamps.len()).collect();
    order.sort_by_key(|&i| stamps[i]); // stable: ties in their places
    order.truncate(count);
    order.sort_unstable();
    order
}

#[pyfunction]
#[allow(clippy::too_many_arguments)]
fn quotes<'py>(py: Python<'py>, spans: &Bound<'py, PyAny>, logs: &Bound<'py, PyAny>, origin: &Bound<'py, PyAny>,
               event_text: &Bound<'py, PyAny>, event_class: &Bound<'py, PyAny>, max_quotes: usize,
               max_text: isize) -> PyResult<Option<Bound<'py, PyList>>> {
    let spans = match spans.downcast_exact::<PyList>() {
        Ok(spans) => spans,
        Err(_) => return Ok(None),
    };
    let logs = match logs.downcast_exact::<PyDict>() {
        Ok(logs) => logs,
        Err(_) => return Ok(None),
    };
    let origin = match exact_i64(origin) {
        Some(origin) => origin as i128,
        None => return Ok(None),
    };
    let spans: Vec<Bound<'py, PyAny>> = spans.iter().collect();
    quote(py, &mut Names::new(py), &spans, logs, origin, event_text, event_class, max_quotes, max_text)
}

/// `quotes` of these spans (the reference's loop, from its first span read).
#[allow(clippy::too_many_arguments)]
fn quote<'py>(py: Python<'py>, names: &mut Names<'py>, spans: &[Bound<'py, PyAny>], logs: &Bound<'py, PyDict>, origin: i128,
              event_text: &Bound<'py, PyAny>, event_class: &Bound<'py, PyAny>, max_quotes: usize,
              max_text: isize) -> PyResult<Option<Bound<'py, PyList>>> {
    // Interned once for the process (`intern!`): interning a name per call was most of a small finding's cost.
    let (k_span_id, k_level) = (intern!(py, "span_id"), intern!(py, "level"));
    let mut span_ids: Vec<Bound<'py, PyAny>> = Vec::new();
    let mut found: Vec<Item<'py>> = Vec::new();
    let mut seen = 0usize;
    for span in spans {
        let Some(events) = read(&mut names.events, span).as_ref().and_then(items) else { return Ok(None) };
        let Some(span_id) = read(&mut names.span_id, span) else { return Ok(None) };
        let at_span = span_ids.len();
        for event in events.iter() {
            let Some(at) = read(&mut names.time, event).as_ref().and_then(exact_i64) else { return Ok(None) };
            found.push(Item { at, span: at_span, item: event.clone() });
        }
        // `logs.get(span_id, ())`: an unhashable ID raises there.
        let lines = match logs.get_item(&span_id) {
            Ok(Some(lines)) => match items(&lines) {
                Some(lines) => lines,
                None => return Ok(None),
            },
            Ok(None) => Vec::new(),
            Err(_) => return Ok(None),
        };
        if !lines.is_empty() {
            let mut stamps = Vec::with_capacity(lines.len());
            for line in lines.iter() {
                let Some(at) = read(&mut names.stamp, line).as_ref().and_then(exact_i64) else { return Ok(None) };
                stamps.push(at);
            }
            for i in earliest(&stamps, max_quotes) {
                found.push(Item { at: stamps[i], span: at_span, item: lines[i].clone() });
            }
        }
        span_ids.push(span_id);
        seen += events.len() + lines.len();
        if seen >= 4 * max_quotes {
            break;
        }
    }
    found.sort_by_key(|item| item.at); // stable: items of one instant stay in the spans' order
    found.truncate(max_quotes);
    let (k_source, k_offset, k_text) = (intern!(py, "source"), intern!(py, "offset_ms"), intern!(py, "text"));
    let (event_source, log_source) = (intern!(py, "event"), intern!(py, "log"));
    let out = PyList::empty(py);
    for Item { at, span, item } in found {
        let offset = at as i128 - origin;
        if !(0..EXACT_NS).contains(&offset) || offset % 1000 == 500 {
            return Ok(None); // `round` decides those
        }
        let offset_ms = ((offset + 500) / 1000) as f64 / 1000.0;
        let entry = PyDict::new(py);
        entry.set_item(k_span_id, &span_ids[span])?;
        if item.is_instance(event_class)? {
            entry.set_item(k_source, event_source)?;
            entry.set_item(k_offset, offset_ms)?;
            entry.set_item(k_text, event_text.call1((&item,))?)?;
        } else {
            let (Some(level), Some(line)) = (read(&mut names.level, &item), read(&mut names.line, &item)) else { return Ok(None) };
            let text = unsafe {
                if ffi::PyUnicode_CheckExact(line.as_ptr()) == 0 {
                    return Ok(None);
                }
                if ffi::PyUnicode_GetLength(line.as_ptr()) <= max_text as ffi::Py_ssize_t {
                    line
                } else {
                    Bound::from_owned_ptr_or_err(py, ffi::PyUnicode_Substring(line.as_ptr(), 0, max_text as ffi::Py_ssize_t))?
                }
            };
            entry.set_item(k_source, log_source)?;
            entry.set_item(k_level, level)?;
            entry.set_item(k_offset, offset_ms)?;
            entry.set_item(k_text, text)?;
        }
        out.append(entry)?;
    }
    Ok(Some(out))
}

/// `merge`'s quoting loop (correlator/analysis/merge.py, `_quote_python` the reference): each finding without quotes of
/// its own gets `{**evidence, "quotes": said}` through `new_finding` when its first `quoted_spans` spans (those `by_id`
/// knows) said anything. None — a finding that is not read as expected (span IDs not a tuple, evidence not a dict), a
/// span ID that cannot be looked up, or spans `quote` hands back — and Python quotes them all as before.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
fn quote_findings<'py>(py: Python<'py>, findings: &Bound<'py, PyAny>, by_id: &Bound<'py, PyAny>, logs: &Bound<'py, PyAny>,
                       origin: &Bound<'py, PyAny>, event_text: &Bound<'py, PyAny>, event_class: &Bound<'py, PyAny>,
                       max_quotes: usize, max_text: isize, quoted_spans: usize,
                       new_finding: &Bound<'py, PyAny>) -> PyResult<Option<Bound<'py, PyList>>> {
    let (Ok(findings), Ok(by_id), Ok(logs)) =
        (findings.downcast_exact::<PyList>(), by_id.downcast_exact::<PyDict>(), logs.downcast_exact::<PyDict>())
    else {
        return Ok(None);
    };
    let Some(origin) = exact_i64(origin) else { return Ok(None) };
    let (k_evidence, k_span_ids, k_quotes) = (intern!(py, "evidence"), intern!(py, "span_ids"), intern!(py, "quotes"));
    let (k_kind, k_severity, k_message, k_impact) =
        (intern!(py, "kind"), intern!(py, "severity"), intern!(py, "message"), intern!(py, "impact_ns"));
    let out = PyList::empty(py);
    let mut names = Names::new(py);
    let mut spans: Vec<Bound<'py, PyAny>> = Vec::new();
    for finding in findings.iter() {
        let Some(evidence) = attr(&finding, k_evidence) else { return Ok(None) };
        let Ok(evidence) = evidence.downcast_exact::<PyDict>() else { return Ok(None) };
        if evidence.contains(k_quotes)? {
            out.append(&finding)?; // its own quotes stand
            continue;
        }
        let Some(span_ids) = attr(&finding, k_span_ids) else { return Ok(None) };
        let Ok(span_ids) = span_ids.downcast_exact::<PyTuple>() else { return Ok(None) };
        spans.clear();
        for sid in span_ids.iter().take(quoted_spans) {
            // `[by_id[sid] for sid in … if sid in by_id]`: an unhashable ID raises there.
            match by_id.get_item(&sid) {
                Ok(Some(span)) => spans.push(span),
                Ok(None) => {}
                Err(_) => return Ok(None),
            }
        }
        let Some(said) = quote(py, &mut names, &spans, logs, origin as i128, event_text, event_class, max_quotes, max_text)? else {
            return Ok(None);
        };
        if said.is_empty() {
            out.append(&finding)?;
            continue;
        }
        let merged = evidence.copy()?;
        merged.set_item(k_quotes, said)?;
        let (Some(kind), Some(severity), Some(message), Some(impact)) = (attr(&finding, k_kind), attr(&finding, k_severity),
            attr(&finding, k_message), attr(&finding, k_impact)) else { return Ok(None) };
        out.append(new_finding.call1((kind, severity, message, span_ids, merged, impact))?)?;
    }
    Ok(Some(out))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(quotes, m)?)?;
    m.add_function(wrap_pyfunction!(quote_findings, m)?)?;
    Ok(())
}
