//! Parts of the correlation body written natively (issue 14, P3: the response of a small correlation).
//!
//! - `render_findings_json`: the `findings` list as the JSON orjson writes for `render._finding`'s dicts, without
//!   making them (5 findings of P3's trace with ~25 quote dicts: their dicts and orjson's walk over them were a fifth
//!   of the response's cost). Evidence is written to any depth up to `MAX_DEPTH`: exact dicts with str keys, exact
//!   lists and tuples, str / int / bool / None, and floats in the range where orjson's text is known (below); any
//!   other value is written by orjson itself (`dumps`, the body's writer), a dict with another key whole by orjson.
//! - `ids_by_span`: `join.ids_by_span`'s mapping (span ID → the IDs of the items placed on it, in item order) as a
//!   plain dict, without the interpreter's loop.
//!
//! The Python code is the reference. Anything unexpected (a severity not in the table, span IDs not a tuple or a
//! list, evidence deeper than `MAX_DEPTH`, lengths that differ) → `None`, and Python does it all its own way, errors
//! included. tests/test_body_native.py compares bytes and mappings on generated findings and on P3's correlation.

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};
use pyo3::wrap_pyfunction;

use crate::json_out::{dict_copy, int64, utf8, write_int, write_text, Buf, Field, Writer};

/// Nesting written here; deeper evidence is handed back (orjson counts its own recursion limit over the whole body).
const MAX_DEPTH: usize = 32;

/// A finite float's JSON as orjson writes it, when it is in the range where that text is plain decimal notation with
/// the shortest round-trip digits — what `ryu` writes there too: 0, ±0.0, and 1e-5 ≤ |x| < 1e16 (orjson's exponent
/// form outside it, `1e+16`, `1e-7`, differs from ryu's). None elsewhere (NaN, ±inf, other magnitudes).
pub fn float_text(x: f64, buffer: &mut ryu::Buffer) -> Option<&str> {
    let magnitude = x.abs();
    if magnitude == 0.0 || (1e-5..1e16).contains(&magnitude) {
        Some(buffer.format_finite(x))
    } else {
        None
    }
}

/// Writes `value` as orjson would within the body; false when the whole list must be handed back.
fn deep<'py>(w: &mut Writer<'_, 'py>, value: &Bound<'py, PyAny>, depth: usize, floats: &mut ryu::Buffer) -> PyResult<bool> {
    let p = value.as_ptr();
    unsafe {
        if p == ffi::Py_None() {
            w.out.extend_from_slice(b"null");
        } else if let Some(text) = utf8(value) {
            write_text(&mut w.out, text);
        } else if p == ffi::Py_True() {
            w.out.extend_from_slice(b"true");
        } else if p == ffi::Py_False() {
            w.out.extend_from_slice(b"false");
        } else if ffi::PyFloat_CheckExact(p) != 0 {
            match float_text(ffi::PyFloat_AS_DOUBLE(p), floats) {
                Some(text) => w.out.extend_from_slice(text.as_bytes()),
                None => w.by_orjson(value)?,
            }
        } else if let Some(n) = int64(value) {
            write_int(&mut w.out, n);
        } else if ffi::PyList_CheckExact(p) != 0 || ffi::PyTuple_CheckExact(p) != 0 {
            if depth >= MAX_DEPTH {
                return Ok(false);
            }
            w.out.push(b'[');
            let items: Vec<Bound<'py, PyAny>> = if ffi::PyList_CheckExact(p) != 0 {
                value.downcast_unchecked::<PyList>().iter().collect()
            } else {
                value.downcast_unchecked::<PyTuple>().iter().collect()
            };
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    w.out.push(b',');
                }
                if !deep(w, item, depth + 1, floats)? {
                    return Ok(false);
                }
            }
            w.out.push(b']');
        } else if ffi::PyDict_CheckExact(p) != 0 {
            if depth >= MAX_DEPTH {
                return Ok(false);
            }
            return dict(w, value.downcast_unchecked::<PyDict>(), depth, floats);
        } else {
            w.by_orjson(value)?;
        }
    }
    Ok(true)
}

/// An exact dict: str keys natively, its values by `deep`; a dict with another key is orjson's whole
/// (OPT_NON_STR_KEYS' rules, as the body's writer).
fn dict<'py>(w: &mut Writer<'_, 'py>, d: &Bound<'py, PyDict>, depth: usize, floats: &mut ryu::Buffer) -> PyResult<bool> {
    let items: Vec<(Bound<'py, PyAny>, Bound<'py, PyAny>)> = d.iter().collect();
    if items.iter().any(|(key, _)| utf8(key).is_none()) {
        w.by_orjson(d.as_any())?;
        return Ok(true);
    }
    w.out.push(b'{');
    for (i, (key, value)) in items.iter().enumerate() {
        if i > 0 {
            w.out.push(b',');
        }
        write_text(&mut w.out, utf8(key).expect("checked above"));
        w.out.push(b':');
        if !deep(w, value, depth + 1, floats)? {
            return Ok(false);
        }
    }
    w.out.push(b'}');
    Ok(true)
}

/// `[render._finding(f) for f in findings]` as orjson writes it, or None (Python renders them then).
#[pyfunction]
fn render_findings_json<'py>(py: Python<'py>, findings: &Bound<'py, PyTuple>, severities: &Bound<'py, PyDict>,
                             dumps: &Bound<'py, PyAny>) -> PyResult<Option<Bound<'py, PyAny>>> {
    let (f_kind, f_severity, f_message, f_ids, f_evidence) = (Field::new(py, "kind"), Field::new(py, "severity"),
        Field::new(py, "message"), Field::new(py, "span_ids"), Field::new(py, "evidence"));
    let mut w = Writer::new(Buf::with_capacity(py, 512 * findings.len() + 2)?, dumps);
    let mut floats = ryu::Buffer::new();
    w.out.push(b'[');
    for (i, finding) in findings.iter().enumerate() {
        let severity = match severities.get_item(f_severity.get(&finding)?)? {
            Some(value) => value,
            None => return Ok(None), // Python's KeyError, raised by Python
        };
        let ids = f_ids.get(&finding)?;
        let id_list = unsafe { ffi::PyTuple_CheckExact(ids.as_ptr()) != 0 || ffi::PyList_CheckExact(ids.as_ptr()) != 0 };
        if !id_list {
            return Ok(None);
        }
        if i > 0 {
            w.out.push(b',');
        }
        w.key(true, b"kind");
        w.value(&f_kind.get(&finding)?)?;
        w.key(false, b"severity");
        w.value(&severity)?;
        w.key(false, b"message");
        w.value(&f_message.get(&finding)?)?;
        w.key(false, b"span_ids");
        if !deep(&mut w, &ids, MAX_DEPTH - 1, &mut floats)? {
            return Ok(None);
        }
        w.key(false, b"evidence");
        let evidence = f_evidence.get(&finding)?;
        if unsafe { ffi::PyDict_CheckExact(evidence.as_ptr()) } != 0 {
            if !dict(&mut w, unsafe { evidence.downcast_unchecked::<PyDict>() }, 0, &mut floats)? {
                return Ok(None);
            }
        } else {
            w.by_orjson(&dict_copy(&evidence)?)?; // `dict(f.evidence)`
        }
        w.out.push(b'}');
    }
    w.out.push(b']');
    Ok(Some(w.out.finish(py)?.into_any()))
}

/// `join.ids_by_span(items, places)` as a plain dict, or None when the lengths differ (Python raises then).
#[pyfunction]
fn ids_by_span<'py>(py: Python<'py>, items: &Bound<'py, PyTuple>, places: &Bound<'py, PyTuple>) -> PyResult<Option<Bound<'py, PyDict>>> {
    if items.len() != places.len() {
        return Ok(None);
    }
    let (f_id, f_span) = (Field::new(py, "id"), Field::new(py, "span_id"));
    let out = PyDict::new(py);
    for (item, place) in items.iter().zip(places.iter()) {
        let sid = f_span.get(&place)?;
        if sid.is_none() {
            continue;
        }
        let id = f_id.get(&item)?;
        match out.get_item(&sid)? {
            Some(ids) => ids.downcast::<PyList>()?.append(id)?,
            None => out.set_item(&sid, PyList::new(py, [id])?)?,
        }
    }
    Ok(Some(out))
}

/// Adds this module's functions to the extension module (lib.rs calls it).
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(render_findings_json, m)?)?;
    m.add_function(wrap_pyfunction!(ids_by_span, m)?)?;
    Ok(())
}
