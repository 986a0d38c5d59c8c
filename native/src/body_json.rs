//! Parts of the correlation body made natively (issue 14, P3: the response of a small correlation).
//!
//! `ids_by_span`: `join.ids_by_span`'s mapping (span ID → the IDs of the items placed on it, in item order) as a plain
//! dict, without the interpreter's loop (three per body: a quarter of P3's body outside the native lists was these).
//! The Python code is the reference: lengths that differ → `None`, and Python raises its own error; an item or
//! placement without the field raises `getattr`'s error, as Python does. tests/test_body_native.py compares both.

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};
use pyo3::wrap_pyfunction;

use crate::json_out::Field;

/// `join.ids_by_span(items, places)` as a plain dict, or None when the lengths differ.
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
    m.add_function(wrap_pyfunction!(ids_by_span, m)?)?;
    Ok(())
}
