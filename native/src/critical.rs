//! The critical path, natively (issue 14, P3: a walk over the spans with a sort of each entered span's children, a
//! tuple per child and per section, ~7 % of a small trace's assembly in Python).
//!
//! `correlator/analysis/critical_path.py`'s `_critical_path_python` is the reference, and this is the same walk on the
//! tree's columns: the roots (the depth-0 entries of the pre-order, checked against `tree.roots`), each span's children
//! by position, starts and durations. It gives the same path IDs, `Section`s and `held` dict (keys in the order the
//! walk enters the spans). Anything unexpected — a column that is not a list of exact 64-bit ints, an ID that is not
//! an exact `str` (or holds a lone surrogate), roots that are not the pre-order's depth-0 entries, a pre-order that does
//! not hold every span once, a sum beyond 64 bits — → `None`, and Python walks.
//!
//! tests/test_critical_path_native.py compares the two on generated trees, malformed ones included.

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple, PyType};
use pyo3::wrap_pyfunction;

use crate::analysis::{exact_i64, item, position, text};

type Path<'py> = (Bound<'py, PyTuple>, Bound<'py, PyTuple>, Bound<'py, PyDict>);

/// Children clipped to (lo, hi), those clipped to nothing left out, by (-end, -start, id): `_by_end`.
fn by_end<'a>(below: &[usize], lo: i128, hi: i128, starts: &[i128], ends: &[i128], ids: &[&'a str]) -> Vec<(i128, i128, usize)> {
    let mut entries: Vec<(i128, i128, usize)> = Vec::with_capacity(below.len());
    for &kid in below {
        let (mut start, mut end) = (starts[kid], ends[kid]);
        start = if start < lo { lo } else if start > hi { hi } else { start };
        end = if end > hi { hi } else if end < lo { lo } else { end };
        if end > start {
            entries.push((end, start, kid));
        }
    }
    entries.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.cmp(&a.1)).then(ids[a.2].cmp(ids[b.2])));
    entries
}

/// `value` as a new Python int when it fits 64 bits.
fn int(py: Python<'_>, value: i128) -> Option<PyObject> {
    let value = i64::try_from(value).ok()?;
    unsafe { PyObject::from_owned_ptr_or_opt(py, ffi::PyLong_FromLongLong(value)) }
}

#[pyfunction]
#[allow(clippy::too_many_arguments)]
fn critical_path<'py>(
    py: Python<'py>,
    roots: &Bound<'py, PyAny>,
    ids: &Bound<'py, PyAny>,
    spans: &Bound<'py, PyAny>,
    starts: &Bound<'py, PyAny>,
    durations: &Bound<'py, PyAny>,
    kids: &Bound<'py, PyAny>,
    order: &Bound<'py, PyAny>,
    depths: &Bound<'py, PyAny>,
    section: &Bound<'py, PyType>,
) -> PyResult<Option<Path<'py>>> {
    let (Ok(roots), Ok(ids), Ok(spans), Ok(starts), Ok(durations), Ok(kids), Ok(order), Ok(depths)) = (
        roots.downcast_exact::<PyList>(),
        ids.downcast_exact::<PyList>(),
        spans.downcast_exact::<PyList>(),
        starts.downcast_exact::<PyList>(),
        durations.downcast_exact::<PyList>(),
        kids.downcast_exact::<PyList>(),
        order.downcast_exact::<PyList>(),
        depths.downcast_exact::<PyList>(),
    ) else {
        return Ok(None);
    };
    let n = ids.len();
    if spans.len() != n || starts.len() != n || durations.len() != n || kids.len() != n || order.len() != n || depths.len() != n || roots.is_empty() {
        return Ok(None);
    }
    // The columns, read once: IDs as text, ends as start + duration (never negative: the tree's cleaning).
    let mut id_text: Vec<&str> = Vec::with_capacity(n);
    let mut start_of: Vec<i128> = Vec::with_capacity(n);
    let mut end_of: Vec<i128> = Vec::with_capacity(n);
    for i in 0..n {
        let (Some(id), Some(start), Some(duration)) = (text(item(ids, i)), exact_i64(item(starts, i)), exact_i64(item(durations, i))) else {
            return Ok(None);
        };
        id_text.push(id);
        start_of.push(start as i128);
        end_of.push(start as i128 + duration as i128);
    }
    // Each span's depth from the pre-order (every span once), and the roots: its depth-0 entries, `tree.roots` in order.
    let mut depth_of: Vec<Option<i64>> = vec![None; n];
    let mut root_positions: Vec<usize> = Vec::with_capacity(roots.len());
    for j in 0..n {
        let (Some(p), Some(depth)) = (position(item(order, j), n), exact_i64(item(depths, j))) else {
            return Ok(None);
        };
        if depth_of[p].is_some() {
            return Ok(None);
        }
        depth_of[p] = Some(depth);
        if depth == 0 {
            let k = root_positions.len();
            if k >= roots.len() || text(item(roots, k)) != Some(id_text[p]) {
                return Ok(None);
            }
            root_positions.push(p);
        }
    }
    if root_positions.len() != roots.len() {
        return Ok(None);
    }
    let mut children: Vec<Vec<usize>> = Vec::with_capacity(n);
    for i in 0..n {
        let below = item(kids, i);
        let mut list = Vec::new();
        unsafe {
            if ffi::PyList_CheckExact(below) != 0 || ffi::PyTuple_CheckExact(below) != 0 {
                let seq = Bound::from_borrowed_ptr(py, below);
                for kid in seq.try_iter()? {
                    let Some(k) = position(kid?.as_ptr(), n) else { return Ok(None) };
                    list.push(k);
                }
            } else {
                return Ok(None);
            }
        }
        children.push(list);
    }
    // The root that ends last; true roots (no parent ID) before orphans: `_pick_root`.
    let parent_name = pyo3::intern!(py, "parent_span_id");
    let mut true_roots: Vec<usize> = Vec::new();
    for &r in &root_positions {
        let span = unsafe { Bound::from_borrowed_ptr(py, item(spans, r)) };
        let Ok(parent) = span.getattr(parent_name) else { return Ok(None) }; // Python raises its own error
        if parent.is_none() {
            true_roots.push(r);
        }
    }
    let candidates = if true_roots.is_empty() { &root_positions } else { &true_roots };
    let bounds = |r: usize| (start_of[r], if end_of[r] > start_of[r] { end_of[r] } else { start_of[r] });
    let mut root = candidates[0];
    for &r in &candidates[1..] {
        let (best, here) = (bounds(root), bounds(r));
        // max by (end, -start, id): the first of equals stays (Python's `max`)
        if here.1.cmp(&best.1).then(best.0.cmp(&here.0)).then(id_text[r].cmp(id_text[root])).is_gt() {
            root = r;
        }
    }
    // The walk (`_critical_path_python`'s loop, by position).
    let (mut start, mut cursor) = bounds(root);
    let mut entered: Vec<i128> = vec![0; n];
    let mut held: Vec<Option<i128>> = vec![None; n];
    let mut held_order: Vec<usize> = vec![root];
    entered[root] = start;
    held[root] = Some(0);
    let mut sections: Vec<(usize, i128, i128)> = Vec::new();
    let mut stack: Vec<(usize, i128, Vec<(i128, i128, usize)>, usize)> = Vec::new();
    let mut current = root;
    let mut below = if children[root].is_empty() { Vec::new() } else { by_end(&children[root], start, cursor, &start_of, &end_of, &id_text) };
    let mut i = 0usize;
    loop {
        while i < below.len() && below[i].0 > cursor {
            i += 1;
        }
        let section_start = if i < below.len() { below[i].0 } else { start };
        if cursor > section_start {
            sections.push((current, section_start, cursor));
            *held[current].get_or_insert(0) += cursor - section_start;
        }
        if i < below.len() {
            let (child_end, child_start, child) = below[i];
            stack.push((current, start, std::mem::take(&mut below), i + 1));
            if held[child].is_none() {
                held[child] = Some(0);
                held_order.push(child);
            }
            entered[child] = child_start;
            current = child;
            start = child_start;
            cursor = child_end;
            below = if children[child].is_empty() {
                Vec::new()
            } else {
                by_end(&children[child], child_start, child_end, &start_of, &end_of, &id_text)
            };
            i = 0;
            continue;
        }
        let Some((parent, parent_start, parent_below, next)) = stack.pop() else { break };
        cursor = start; // the finished child's start, in its parent
        current = parent;
        start = parent_start;
        below = parent_below;
        i = next;
    }
    // The path: by (entered start, depth, id).
    let mut path = held_order.clone();
    path.sort_by(|&a, &b| entered[a].cmp(&entered[b]).then(depth_of[a].cmp(&depth_of[b])).then(id_text[a].cmp(id_text[b])));
    let path_ids = PyTuple::new(py, path.iter().map(|&p| unsafe { Bound::from_borrowed_ptr(py, item(ids, p)) }))?;
    let held_dict = PyDict::new(py);
    for &p in &held_order {
        let Some(value) = int(py, held[p].unwrap_or(0)) else { return Ok(None) };
        held_dict.set_item(unsafe { Bound::from_borrowed_ptr(py, item(ids, p)) }, value)?;
    }
    // `Section`s, chronological (the walk made them last first), made as `Section._make` makes them.
    let class = section.as_ptr() as *mut ffi::PyTypeObject;
    let mut made: Vec<Bound<'py, PyAny>> = Vec::with_capacity(sections.len());
    for &(p, lo, hi) in sections.iter().rev() {
        let (Some(lo), Some(hi)) = (int(py, lo), int(py, hi)) else { return Ok(None) };
        unsafe {
            let alloc = (*class).tp_alloc.unwrap_or(ffi::PyType_GenericAlloc);
            let obj = alloc(class, 3);
            if obj.is_null() {
                return Err(PyErr::fetch(py));
            }
            let id = item(ids, p);
            ffi::Py_INCREF(id);
            ffi::PyTuple_SET_ITEM(obj, 0, id);
            ffi::PyTuple_SET_ITEM(obj, 1, lo.into_ptr());
            ffi::PyTuple_SET_ITEM(obj, 2, hi.into_ptr());
            made.push(Bound::from_owned_ptr(py, obj));
        }
    }
    Ok(Some((path_ids, PyTuple::new(py, made)?, held_dict)))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(critical_path, m)?)?;
    Ok(())
}
