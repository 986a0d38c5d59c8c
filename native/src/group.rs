//! Items grouped by the span the join placed them on, natively (issue 14, P2 at 1k spans: the two Python loops over
//! every log line — the analysis's evidence in `correlate._assemble`, the render's IDs per span — were ~0.7 ms of a
//! 9 ms correlation of 5k lines).
//!
//! `correlator/join.py`'s `_group_python` is the reference:
//!
//! ```python
//! for item, placement in zip(items, places, strict=True):
//!     if placement.span_id is not None:
//!         out.setdefault(placement.span_id, []).append(item if field is None else getattr(item, field))
//! ```
//!
//! The same dict operations in the same order (a key looked up, a new list stored when missing, the value appended),
//! so the dict, its key order and its lists are the same. Only exact tuples of equal lengths and an `out` that is a
//! empty dict (or a subclass, looked up as a plain dict: `setdefault` does not call `__missing__` either) are taken;
//! anything else → `False` before anything is done, and Python groups them (raising what it raises). An error while
//! reading an attribute or comparing keys is raised as Python's loop would raise it.
//!
//! tests/test_group_native.py compares the two on generated items and placements.

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString, PyTuple};
use pyo3::wrap_pyfunction;

use crate::json_out::Field;

/// Fills `out` with `items` (or their `field`) grouped by their placement's `span_id`; `False` when Python must.
#[pyfunction]
#[pyo3(signature = (out, items, places, field=None))]
fn group_by_span<'py>(py: Python<'py>, out: &Bound<'py, PyAny>, items: &Bound<'py, PyAny>, places: &Bound<'py, PyAny>,
                      field: Option<&Bound<'py, PyString>>) -> PyResult<bool> {
    let (Ok(out), Ok(items), Ok(places)) = (out.downcast::<PyDict>(), items.downcast_exact::<PyTuple>(), places.downcast_exact::<PyTuple>())
    else {
        return Ok(false);
    };
    if items.len() != places.len() || !out.is_empty() {
        return Ok(false);
    }
    let value_field = match field {
        Some(name) => match name.to_str() {
            Ok(name) => Some(Field::new(py, name)),
            Err(_) => return Ok(false), // not plain text: getattr's own rules
        },
        None => None,
    };
    let span_field = Field::new(py, "span_id");
    // The last key and its list: consecutive lines of one span (the usual order) skip the dict lookup. The key object
    // itself, compared by identity: the dict holds it, so it stays alive and maps to that list.
    let mut last: Option<(*mut ffi::PyObject, Bound<'py, PyAny>)> = None;
    for (item, place) in items.iter().zip(places.iter()) {
        let span_id = span_field.get(&place)?;
        if span_id.is_none() {
            continue;
        }
        let value = match &value_field {
            Some(value_field) => value_field.get(&item)?,
            None => item,
        };
        let list = match &last {
            Some((key, list)) if *key == span_id.as_ptr() => list.clone(),
            _ => {
                let list = match out.get_item(&span_id)? {
                    Some(list) => list,
                    None => {
                        let list = PyList::empty(py).into_any();
                        out.set_item(&span_id, &list)?;
                        list
                    }
                };
                last = Some((span_id.as_ptr(), list.clone()));
                list
            }
        };
        if unsafe { ffi::PyList_Append(list.as_ptr(), value.as_ptr()) } != 0 {
            return Err(PyErr::fetch(py));
        }
    }
    Ok(true)
}

/// Adds this module's functions to the extension module (lib.rs calls it).
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(group_by_span, m)?)?;
    Ok(())
}
