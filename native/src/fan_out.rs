//! The fan-out detector's "runs N of its M calls in parallel" findings, natively (issue 14, P3: a small trace's five
//! such findings were ~35 k instructions each in Python, most of the detector: the f-string, `fmt_ms` twice, `round`,
//! `:.1f`, the evidence dict and the span IDs' tuple).
//!
//! `correlator/analysis/fan_out.py`'s loop over the parents it shows is the reference. This builds the findings of
//! the parents `fan_out_scan` found (all different calls, one group: `group` None, `same` False) with their overlap
//! already counted. The numbers' texts are CPython's own: `format(x, ".Nf")` is `PyOS_double_to_string(x, 'f', N, 0)`
//! (what `float.__format__` calls for a plain `.Nf`), and `round` is the float's own `__round__`; the quotients
//! (`total / wall`, `ns / MS`) are taken in `f64` only where both sides are exact doubles (below 2⁵³), where Python's
//! int true division is the same correctly rounded quotient. The label is Python's `label`, the finding Python's
//! `new_finding`. Anything else — another entry shape, a group, an overlap still to count, an int beyond 2⁵³, a position
//! out of range, a label that is not an exact `str` of valid UTF-8 — → `None`, and Python builds them all as before.
//!
//! tests/test_fan_out_native.py compares the two on generated trees and on P3's trace.

use std::ffi::CStr;
use std::os::raw::{c_char, c_void};

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyFloat, PyList, PyString, PyTuple};
use pyo3::{intern, wrap_pyfunction};

use crate::analysis::{exact_i64, position, text};

/// Ints whose value is an exact double (and every quotient of two of them Python's, correctly rounded).
const EXACT: i64 = 1 << 53;
const MS: f64 = 1_000_000.0;

/// `format(x, f".{precision}f")` appended to `out`, by the function `float.__format__` ends in; false if it failed.
fn push_fixed(out: &mut String, x: f64, precision: i32) -> bool {
    unsafe {
        let p = ffi::PyOS_double_to_string(x, b'f' as c_char, precision, 0, std::ptr::null_mut());
        if p.is_null() {
            ffi::PyErr_Clear();
            return false;
        }
        let ok = match CStr::from_ptr(p).to_str() {
            Ok(s) => {
                out.push_str(s);
                true
            }
            Err(_) => false,
        };
        ffi::PyMem_Free(p as *mut c_void);
        ok
    }
}

/// `round(x, digits)`: the float's own `__round__`.
fn py_round<'py>(py: Python<'py>, x: f64, digits: i32) -> PyResult<Bound<'py, PyAny>> {
    PyFloat::new(py, x).call_method1(intern!(py, "__round__"), (digits,))
}

/// `analysis.common.fmt_ms(ns)` appended to `out`, for |ns| < 2⁵³; Ok(false) if a text could not be made.
fn push_ms(py: Python<'_>, out: &mut String, ns: i64) -> PyResult<bool> {
    let ms = ns as f64 / MS;
    if ms == 0.0 {
        out.push_str("0ms");
        return Ok(true);
    }
    let size = ms.abs();
    let precision = if size >= 10.0 || (size >= 9.9 && py_round(py, ms, 1)?.extract::<f64>()?.abs() >= 10.0) {
        0
    } else if size >= 1.0 {
        1
    } else {
        2
    };
    if !push_fixed(out, ms, precision) {
        return Ok(false);
    }
    out.push_str("ms");
    Ok(true)
}

/// An exact int below 2⁵³ in size, else None.
fn exact_int(value: *mut ffi::PyObject) -> Option<i64> {
    exact_i64(value).filter(|v| v.abs() < EXACT)
}

/// The findings of `shown` (fan_out's `(less, parent, seq, below, group, overlapping, Σ, wall, same)` entries, in order),
/// each `new_finding(kind, severity, message, span_ids, evidence, 0)`; None: Python builds them.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
fn fan_out_parallel_findings<'py>(
    py: Python<'py>,
    shown: &Bound<'py, PyAny>,
    by_id: &Bound<'py, PyAny>,
    ids: &Bound<'py, PyAny>,
    label: &Bound<'py, PyAny>,
    new_finding: &Bound<'py, PyAny>,
    kind: &Bound<'py, PyAny>,
    severity: &Bound<'py, PyAny>,
) -> PyResult<Option<Bound<'py, PyList>>> {
    let (Ok(shown), Ok(by_id), Ok(ids)) =
        (shown.downcast_exact::<PyList>(), by_id.downcast_exact::<PyDict>(), ids.downcast_exact::<PyList>())
    else {
        return Ok(None);
    };
    let n = ids.len();
    let (k_children, k_overlapping, k_parallelism, k_sum, k_wall) = (intern!(py, "children"), intern!(py, "overlapping"),
        intern!(py, "parallelism"), intern!(py, "sum_ms"), intern!(py, "wall_ms"));
    let zero = 0i64.into_pyobject(py)?;
    let out = PyList::empty(py);
    let mut message = String::with_capacity(160);
    for entry in shown.iter() {
        let Ok(entry) = entry.downcast_exact::<PyTuple>() else { return Ok(None) };
        if entry.len() != 9 {
            return Ok(None);
        }
        let at = |i: usize| unsafe { ffi::PyTuple_GET_ITEM(entry.as_ptr(), i as ffi::Py_ssize_t) };
        let (parent, below, group, overlapping, total, wall, same) = (at(1), at(3), at(4), at(5), at(6), at(7), at(8));
        if group != unsafe { ffi::Py_None() } || same != unsafe { ffi::Py_False() } || text(parent).is_none() {
            return Ok(None);
        }
        let (Some(count_overlapping), Some(total_ns), Some(wall_ns)) = (exact_int(overlapping), exact_int(total), exact_int(wall))
        else {
            return Ok(None);
        };
        if count_overlapping <= 0 || wall_ns <= 0 || unsafe { ffi::PyList_CheckExact(below) } == 0 {
            return Ok(None); // an overlap still to count (Python's `_overlapping_at`), or not a parallel parent's entry
        }
        let below = unsafe { Bound::from_borrowed_ptr(py, below) };
        let below = below.downcast_exact::<PyList>().expect("checked");
        let count = below.len();
        let mut span_ids: Vec<Bound<'py, PyAny>> = Vec::with_capacity(count + 1);
        span_ids.push(unsafe { Bound::from_borrowed_ptr(py, parent) });
        for c in 0..count {
            let Some(k) = position(crate::analysis::item(below, c), n) else { return Ok(None) };
            span_ids.push(unsafe { Bound::from_borrowed_ptr(py, crate::analysis::item(ids, k)) });
        }
        let Some(span) = by_id.get_item(unsafe { Bound::from_borrowed_ptr(py, parent) })? else { return Ok(None) };
        let labelled = label.call1((span,))?;
        let Some(labelled) = text(labelled.as_ptr()) else { return Ok(None) };
        let ratio = total_ns as f64 / wall_ns as f64;
        message.clear();
        message.push_str(labelled);
        message.push_str(" runs ");
        message.push_str(&count_overlapping.to_string());
        message.push_str(" of its ");
        message.push_str(&count.to_string());
        message.push_str(" calls in parallel (parallelism ");
        if !push_fixed(&mut message, ratio, 1) {
            return Ok(None);
        }
        message.push_str("×: ");
        if !push_ms(py, &mut message, total_ns)? {
            return Ok(None);
        }
        message.push_str(" of work in ");
        if !push_ms(py, &mut message, wall_ns)? {
            return Ok(None);
        }
        message.push_str(") — good");
        let evidence = PyDict::new(py);
        evidence.set_item(k_children, count)?;
        evidence.set_item(k_overlapping, unsafe { Bound::from_borrowed_ptr(py, overlapping) })?;
        evidence.set_item(k_parallelism, py_round(py, ratio, 2)?)?;
        evidence.set_item(k_sum, total_ns as f64 / MS)?;
        evidence.set_item(k_wall, wall_ns as f64 / MS)?;
        let finding = new_finding.call1((kind, severity, PyString::new(py, &message), PyTuple::new(py, span_ids)?, evidence,
                                         &zero))?;
        out.append(finding)?;
    }
    Ok(Some(out))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(fan_out_parallel_findings, m)?)?;
    m.add_function(wrap_pyfunction!(skew_finding, m)?)?;
    Ok(())
}

/// `skew._ms(ns)` where it needs no `round` (0 ≤ ns < 2⁵⁰, not a tie at .5 µs): whole µs ÷ 1000, as Python divides
/// those ints (both exact doubles: one correctly rounded quotient). None: Python's `round` decides.
fn skew_ms(ns: i128) -> Option<f64> {
    if (0..1i128 << 50).contains(&ns) && ns % 1000 != 500 {
        Some(((ns + 500) / 1000) as f64 / 1000.0)
    } else {
        None
    }
}

/// `repr(x)` of a float appended to `out`, by the function `float.__repr__` ends in; false if it failed.
fn push_repr(out: &mut String, x: f64) -> bool {
    unsafe {
        let p = ffi::PyOS_double_to_string(x, b'r' as c_char, 0, ffi::Py_DTSF_ADD_DOT_0, std::ptr::null_mut());
        if p.is_null() {
            ffi::PyErr_Clear();
            return false;
        }
        let ok = match CStr::from_ptr(p).to_str() {
            Ok(s) => {
                out.push_str(s);
                true
            }
            Err(_) => false,
        };
        ffi::PyMem_Free(p as *mut c_void);
        ok
    }
}

/// One clock-skew finding of `skew.skew_findings` (the reference) for a skewed pair: `make(kind, severity, message,
/// ids, evidence, 0)`. None — an offset `_ms` must `round` (negative, a tie, beyond 2⁵⁰ ns), a name that is not an
/// exact `str` — and Python makes it.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
fn skew_finding<'py>(
    py: Python<'py>,
    caller: &Bound<'py, PyAny>,
    server: &Bound<'py, PyAny>,
    low: &Bound<'py, PyAny>,
    high: &Bound<'py, PyAny>,
    pairs: &Bound<'py, PyAny>,
    ids: &Bound<'py, PyTuple>,
    make: &Bound<'py, PyAny>,
    info: &Bound<'py, PyAny>,
    warning: &Bound<'py, PyAny>,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    let (Some(caller_text), Some(server_text), Some(pair_count)) = (text(caller.as_ptr()), text(server.as_ptr()),
                                                                     exact_i64(pairs.as_ptr())) else {
        return Ok(None);
    };
    let (Some(low), Some(high)) = (exact_i64(low.as_ptr()), exact_i64(high.as_ptr())) else { return Ok(None) };
    let (low, high) = (low as i128, high as i128);
    let offset = (low + high).div_euclid(2); // Python's floor division
    let (Some(min_ms), Some(margin_ms)) = (skew_ms(low), skew_ms((high - low).abs().div_euclid(2))) else {
        return Ok(None);
    };
    let max_ms = if high == low { Some(min_ms) } else { skew_ms(high) };
    let Some(max_ms) = max_ms else { return Ok(None) };
    let offset_ms = if offset == low { min_ms } else if offset == high { max_ms } else {
        let Some(ms) = skew_ms(offset) else { return Ok(None) };
        ms
    };
    let severity = if offset.abs() >= 100_000_000 { warning } else { info };
    let mut message = String::with_capacity(260);
    message.push_str(server_text);
    message.push_str("'s clock runs ");
    if !push_repr(&mut message, offset_ms.abs()) {
        return Ok(None);
    }
    message.push_str(" ms (± ");
    if !push_repr(&mut message, margin_ms) {
        return Ok(None);
    }
    message.push_str(") ");
    message.push_str(if offset > 0 { "ahead of" } else { "behind" });
    message.push(' ');
    message.push_str(caller_text);
    message.push_str("'s, from ");
    message.push_str(&pair_count.to_string());
    message.push_str(" call(s): ");
    message.push_str(&ids.len().to_string());
    message.push_str(" span(s) start before or end after their caller — only the clocks explain that; times are shown \
                      as reported, log lines are matched at the estimated offset");
    let evidence = PyDict::new(py);
    evidence.set_item(intern!(py, "caller"), caller)?;
    evidence.set_item(intern!(py, "server"), server)?;
    evidence.set_item(intern!(py, "offset_ms"), offset_ms)?;
    evidence.set_item(intern!(py, "min_ms"), min_ms)?;
    evidence.set_item(intern!(py, "max_ms"), max_ms)?;
    evidence.set_item(intern!(py, "pairs"), pairs)?;
    Ok(Some(make.call1(("clock_skew", severity, PyString::new(py, &message), ids, evidence, 0))?))
}
