//! The span tree of a well-formed trace, natively (issue 14, P2: `build_tree` of a 100k-span trace was ~125 ms of
//! list and dict passes in Python, a third of join + analysis).
//!
//! `correlator/spantree.py` `build_tree` is the reference. This does exactly what it does for a trace without
//! anything to repair — unique span IDs, no negative duration, no parent-link cycle — with plain `str` IDs
//! (parents `str` or `None`) and 64-bit `int` times; anything else → `None`, and Python builds the whole tree.
//! Orphans and self-parents are kept as Python keeps them (extra roots); their problem texts are Python's to write.
//!
//! tests/test_spantree_native.py compares both on random malformed trees and the fixtures' traces.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};
use pyo3::wrap_pyfunction;

use crate::json_out::Field;

/// Hashes an object's address (the spans of one trace: not chosen by the answer, so no keyed hash needed).
#[derive(Default)]
struct AddressHasher(u64);

impl Hasher for AddressHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_usize(&mut self, n: usize) {
        let h = (n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        self.0 = h ^ (h >> 29);
    }
}

/// A 64-bit value of an exact `int`, else None.
fn exact_i64(value: *mut ffi::PyObject) -> Option<i64> {
    unsafe {
        if ffi::PyLong_CheckExact(value) == 0 {
            return None;
        }
        // (…AndOverflow reads the digits directly; PyLong_AsLongLong goes through a byte array: 7 % of the build.)
        let mut overflow: std::os::raw::c_int = 0;
        let n = ffi::PyLong_AsLongLongAndOverflow(value, &mut overflow);
        if overflow != 0 || (n == -1 && !ffi::PyErr_Occurred().is_null()) {
            ffi::PyErr_Clear();
            return None;
        }
        Some(n)
    }
}

/// A new list holding `items` (owned references, stolen).
fn list_of(py: Python<'_>, items: Vec<*mut ffi::PyObject>) -> PyResult<Bound<'_, PyList>> {
    unsafe {
        let list = ffi::PyList_New(items.len() as ffi::Py_ssize_t);
        if list.is_null() {
            for item in items {
                ffi::Py_DECREF(item);
            }
            return Err(PyErr::fetch(py));
        }
        for (i, item) in items.into_iter().enumerate() {
            ffi::PyList_SET_ITEM(list, i as ffi::Py_ssize_t, item);
        }
        Ok(Bound::from_owned_ptr(py, list).downcast_into_unchecked())
    }
}

/// An empty dict with room for `n` keys (no resize while it fills, as `dict(zip(…))` resizes).
fn presized(py: Python<'_>, n: usize) -> PyResult<Bound<'_, PyDict>> {
    unsafe { Ok(Bound::from_owned_ptr_or_err(py, ffi::_PyDict_NewPresized(n as ffi::Py_ssize_t))?.downcast_into_unchecked()) }
}

fn new_int(py: Python<'_>, n: i64) -> PyResult<*mut ffi::PyObject> {
    let value = unsafe { ffi::PyLong_FromLongLong(n) };
    if value.is_null() {
        return Err(PyErr::fetch(py));
    }
    Ok(value)
}

/// `obj` with one more reference (to be stolen by a list).
fn owned(obj: &Bound<'_, PyAny>) -> *mut ffi::PyObject {
    let p = obj.as_ptr();
    unsafe { ffi::Py_INCREF(p) };
    p
}

/// `build_tree`'s parts for `spans` (a tuple of `Span`), or None when Python must build the tree:
/// `(by_id, ids, span_list, starts, durations, own, kids, parents, roots, self_loops, orphans, order_ids,
///   children, depth, self_ns, start_ns, end_ns, order, depths)` — positions are indices into `ids`; `roots` are IDs (true roots
/// and self-parents by start, then orphans by start); `self_loops` and `orphans` are positions, for the problems;
/// `order` is the tree's order as positions and `depths` their depths.
#[pyfunction]
fn span_tree<'py>(py: Python<'py>, spans: &Bound<'py, PyAny>) -> PyResult<Option<Bound<'py, PyTuple>>> {
    let spans = match spans.downcast::<PyTuple>() {
        Ok(spans) => spans,
        Err(_) => return Ok(None),
    };
    let n = spans.len();
    if n == 0 {
        return Ok(None);
    }
    let (f_id, f_parent, f_start, f_end) =
        (Field::new(py, "span_id"), Field::new(py, "parent_span_id"), Field::new(py, "start_ns"), Field::new(py, "end_ns"));
    let mut span_list: Vec<Bound<'py, PyAny>> = Vec::with_capacity(n);
    let mut ids: Vec<Bound<'py, PyAny>> = Vec::with_capacity(n);
    let mut parents_of: Vec<Option<Bound<'py, PyAny>>> = Vec::with_capacity(n);
    let mut start_objs: Vec<Bound<'py, PyAny>> = Vec::with_capacity(n);
    let mut starts: Vec<i64> = Vec::with_capacity(n);
    let mut ends: Vec<i64> = Vec::with_capacity(n);
    let by_id = presized(py, n)?;
    let mut position: HashMap<usize, usize, BuildHasherDefault<AddressHasher>> =
        HashMap::with_capacity_and_hasher(n, BuildHasherDefault::default());
    for span in spans.iter() {
        let id = f_id.get(&span)?;
        let parent = f_parent.get(&span)?;
        let start = f_start.get(&span)?;
        let end = f_end.get(&span)?;
        if unsafe { ffi::PyUnicode_CheckExact(id.as_ptr()) } == 0 {
            return Ok(None);
        }
        let parent = if parent.is_none() {
            None
        } else if unsafe { ffi::PyUnicode_CheckExact(parent.as_ptr()) } != 0 {
            Some(parent)
        } else {
            return Ok(None);
        };
        let (s, e) = match (exact_i64(start.as_ptr()), exact_i64(end.as_ptr())) {
            (Some(s), Some(e)) if e >= s && e.checked_sub(s).is_some() => (s, e),
            _ => return Ok(None), // a negative duration (repaired by Python), or not a 64-bit int
        };
        by_id.set_item(&id, &span)?;
        if by_id.len() != span_list.len() + 1 {
            return Ok(None); // a duplicate ID: Python keeps the first and says so
        }
        position.insert(span.as_ptr() as usize, span_list.len());
        span_list.push(span);
        ids.push(id);
        parents_of.push(parent);
        start_objs.push(start);
        starts.push(s);
        ends.push(e);
    }
    // Each span's parent position, through `by_id` (the parent's span object) and the address → position map.
    let mut parent_pos: Vec<Option<usize>> = Vec::with_capacity(n);
    for parent in &parents_of {
        parent_pos.push(match parent {
            None => None,
            Some(pid) => match unsafe { pyo3::ffi::PyDict_GetItemWithError(by_id.as_ptr(), pid.as_ptr()) } {
                p if p.is_null() => {
                    if unsafe { !ffi::PyErr_Occurred().is_null() } {
                        return Err(PyErr::fetch(py));
                    }
                    None
                }
                p => position.get(&(p as usize)).copied(),
            },
        });
    }
    // Every span by (start, -end, id) once (IDs unique: a total order, as Python's sort), children appended in it.
    let mut by_start: Vec<usize> = (0..n).collect();
    let mut id_bytes: Vec<&[u8]> = Vec::with_capacity(n);
    for id in &ids {
        let mut size: ffi::Py_ssize_t = 0;
        let data = unsafe { ffi::PyUnicode_AsUTF8AndSize(id.as_ptr(), &mut size) };
        if data.is_null() {
            unsafe { ffi::PyErr_Clear() };
            return Ok(None); // lone surrogates: no UTF-8 to order by
        }
        id_bytes.push(unsafe { std::slice::from_raw_parts(data as *const u8, size as usize) });
    }
    // UTF-8 byte order is code point order, as Python compares strings.
    by_start.sort_unstable_by(|&a, &b| {
        starts[a].cmp(&starts[b]).then(ends[b].cmp(&ends[a])).then(id_bytes[a].cmp(id_bytes[b]))
    });
    let mut kids: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut roots: Vec<usize> = Vec::new();
    let mut orphans: Vec<usize> = Vec::new();
    let mut self_loops: Vec<usize> = Vec::new();
    for &i in &by_start {
        match parent_pos[i] {
            None if parents_of[i].is_none() => roots.push(i),
            None => orphans.push(i),
            Some(p) if p == i => {
                self_loops.push(i);
                roots.push(i);
            }
            Some(p) => kids[p].push(i),
        }
    }
    roots.extend_from_slice(&orphans);
    // Depth-first pre-order, children by start; a span not reached sits on a cycle: Python breaks it.
    let mut order: Vec<usize> = Vec::with_capacity(n);
    let mut depths: Vec<i64> = Vec::with_capacity(n);
    let mut stack: Vec<(usize, i64)> = roots.iter().rev().map(|&r| (r, 0)).collect();
    while let Some((i, d)) = stack.pop() {
        order.push(i);
        depths.push(d);
        stack.extend(kids[i].iter().rev().map(|&k| (k, d + 1)));
    }
    if order.len() < n {
        return Ok(None);
    }
    // Own time: the duration less the union of the children clipped to the span (children by start).
    let mut own: Vec<i64> = Vec::with_capacity(n);
    for p in 0..n {
        let (lo, hi) = (starts[p], ends[p]);
        let mut covered = 0i64;
        let (mut cur_start, mut cur_end) = (lo, lo);
        for &k in &kids[p] {
            let start = starts[k].max(lo);
            let end = ends[k].min(hi);
            if end <= start {
                continue;
            }
            if start > cur_end {
                covered += cur_end - cur_start;
                cur_start = start;
                cur_end = end;
            } else if end > cur_end {
                cur_end = end;
            }
        }
        own.push(hi - lo - (covered + cur_end - cur_start));
    }

    // The Python objects, as `build_tree` makes them.
    let empty = PyTuple::empty(py);
    let id_list = list_of(py, ids.iter().map(owned).collect())?;
    let span_objs = list_of(py, span_list.iter().map(owned).collect())?;
    let start_list = list_of(py, start_objs.iter().map(owned).collect())?;
    let mut duration_items = Vec::with_capacity(n);
    let mut own_items = Vec::with_capacity(n);
    for p in 0..n {
        duration_items.push(new_int(py, ends[p] - starts[p])?);
        own_items.push(new_int(py, own[p])?);
    }
    let durations = list_of(py, duration_items)?;
    let own_list = list_of(py, own_items)?;
    let mut kid_items = Vec::with_capacity(n);
    let mut parent_items = Vec::new();
    let children = presized(py, n)?;
    let self_ns = presized(py, n)?;
    // A leaf's children: one shared empty list (most spans; nothing mutates the tree's lists once built).
    let no_children = PyList::empty(py);
    for p in 0..n {
        let below = &kids[p];
        if below.is_empty() {
            kid_items.push(owned(empty.as_any()));
            children.set_item(&ids[p], &no_children)?;
        } else {
            let mut positions = Vec::with_capacity(below.len());
            let mut child_ids = Vec::with_capacity(below.len());
            for &k in below {
                positions.push(new_int(py, k as i64)?);
                child_ids.push(owned(&ids[k]));
            }
            kid_items.push(list_of(py, positions)?.into_ptr());
            parent_items.push(new_int(py, p as i64)?);
            children.set_item(&ids[p], list_of(py, child_ids)?)?;
        }
        let set = unsafe { ffi::PyDict_SetItem(self_ns.as_ptr(), ids[p].as_ptr(), ffi::PyList_GET_ITEM(own_list.as_ptr(), p as ffi::Py_ssize_t)) };
        if set != 0 {
            return Err(PyErr::fetch(py));
        }
    }
    let kid_list = list_of(py, kid_items)?;
    let parent_list = list_of(py, parent_items)?;
    let depth = presized(py, n)?;
    let mut order_items = Vec::with_capacity(n);
    for (&i, &d) in order.iter().zip(&depths) {
        order_items.push(owned(&ids[i]));
        let level = new_int(py, d)?;
        let set = unsafe { ffi::PyDict_SetItem(depth.as_ptr(), ids[i].as_ptr(), level) };
        unsafe { ffi::Py_DECREF(level) };
        if set != 0 {
            return Err(PyErr::fetch(py));
        }
    }
    let order_ids = list_of(py, order_items)?;
    let order_list = list_of(py, order.iter().map(|&i| new_int(py, i as i64)).collect::<PyResult<Vec<_>>>()?)?;
    let depth_list = list_of(py, depths.iter().map(|&d| new_int(py, d)).collect::<PyResult<Vec<_>>>()?)?;
    let root_ids = list_of(py, roots.iter().map(|&r| owned(&ids[r])).collect())?;
    let positions = |items: &[usize]| -> PyResult<Bound<'py, PyList>> {
        list_of(py, items.iter().map(|&i| new_int(py, i as i64)).collect::<PyResult<Vec<_>>>()?)
    };
    let mut loops_sorted = self_loops.clone();
    loops_sorted.sort_unstable();
    let start_ns = *starts.iter().min().unwrap_or(&0);
    let end_ns = *ends.iter().max().unwrap_or(&0);
    let parts: Vec<PyObject> = vec![
        by_id.into_any().unbind(), id_list.into_any().unbind(), span_objs.into_any().unbind(),
        start_list.into_any().unbind(), durations.into_any().unbind(), own_list.into_any().unbind(),
        kid_list.into_any().unbind(), parent_list.into_any().unbind(), root_ids.into_any().unbind(),
        positions(&loops_sorted)?.into_any().unbind(), positions(&orphans)?.into_any().unbind(),
        order_ids.into_any().unbind(), children.into_any().unbind(), depth.into_any().unbind(),
        self_ns.into_any().unbind(), start_ns.into_pyobject(py)?.into_any().unbind(),
        end_ns.into_pyobject(py)?.into_any().unbind(), order_list.into_any().unbind(), depth_list.into_any().unbind(),
    ];
    Ok(Some(PyTuple::new(py, parts)?))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(span_tree, m)?)?;
    Ok(())
}
