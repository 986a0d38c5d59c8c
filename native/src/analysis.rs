//! The fan-out detector's pass over every parent, natively (issue 14, P2: at 100k spans the Python loop over
//! ~25k parents was ~40 ms, half of the analysis).
//!
//! `correlator/analysis/fan_out.py` is the reference. This takes the common case off its loop: a parent whose
//! children are all different calls (no two of the same `operation`) and run in parallel (Σ durations more than
//! `factor` × the time any of them ran) is one "runs N calls in parallel" candidate; of those only the `keep` that
//! save most can be shown, so only they come back. Every other parent with `fewest` children or more (calls of one
//! name, or not parallel) comes back by position for the Python loop, in the same order. Anything unexpected — a
//! column that is not a list of exact 64-bit `int`s, an operation that is not a `str` (or holds a lone surrogate),
//! a parent ID that is not a `str` — → `None`, and Python does the whole pass as before.
//!
//! tests/test_analysis_cost_same.py compares the analysis with the old one on generated traces, with and without it.

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString};
use pyo3::wrap_pyfunction;

/// A 64-bit value of an exact `int`, else None.
pub(crate) fn exact_i64(value: *mut ffi::PyObject) -> Option<i64> {
    unsafe {
        if ffi::PyLong_CheckExact(value) == 0 {
            return None;
        }
        let mut overflow: std::os::raw::c_int = 0;
        let n = ffi::PyLong_AsLongLongAndOverflow(value, &mut overflow);
        if overflow != 0 || (n == -1 && !ffi::PyErr_Occurred().is_null()) {
            ffi::PyErr_Clear();
            return None;
        }
        Some(n)
    }
}

/// Item `i` of a list whose length was checked (borrowed: the list holds it).
pub(crate) fn item(list: &Bound<'_, PyList>, i: usize) -> *mut ffi::PyObject {
    debug_assert!(i < list.len());
    unsafe { ffi::PyList_GET_ITEM(list.as_ptr(), i as ffi::Py_ssize_t) }
}

/// Item `i` of a list as an exact 64-bit int.
fn int_at(list: &Bound<'_, PyList>, i: usize) -> Option<i64> {
    exact_i64(item(list, i))
}

/// A position (an exact int in `0..n`), else None.
pub(crate) fn position(value: *mut ffi::PyObject, n: usize) -> Option<usize> {
    exact_i64(value).and_then(|v| usize::try_from(v).ok()).filter(|&v| v < n)
}

/// The text of an exact `str` (borrowed from the object: its UTF-8, kept by CPython as long as it lives), else None
/// (another type, or a lone surrogate: Python compares those itself).
pub(crate) fn text<'a>(value: *mut ffi::PyObject) -> Option<&'a str> {
    unsafe {
        if ffi::PyUnicode_CheckExact(value) == 0 {
            return None;
        }
        let mut size: ffi::Py_ssize_t = 0;
        let data = ffi::PyUnicode_AsUTF8AndSize(value, &mut size);
        if data.is_null() {
            ffi::PyErr_Clear();
            return None;
        }
        Some(std::str::from_utf8_unchecked(std::slice::from_raw_parts(data as *const u8, size as usize)))
    }
}

/// A slot of a slots dataclass read where `getattr` would read it (the `Span`s' `operation`, `service`): no attribute
/// lookup per span. Another class, or an attribute that is not a plain slot → `getattr`.
pub(crate) struct Slot<'py> {
    name: Bound<'py, PyString>,
    class: *mut ffi::PyTypeObject,
    offset: Option<ffi::Py_ssize_t>,
}

impl<'py> Slot<'py> {
    pub(crate) fn new(py: Python<'py>, name: &str) -> Self {
        Slot { name: PyString::intern(py, name), class: std::ptr::null_mut(), offset: None }
    }

    /// The value (a new reference, owned by the result).
    pub(crate) fn get(&mut self, obj: *mut ffi::PyObject) -> PyResult<Bound<'py, PyAny>> {
        let py = self.name.py();
        unsafe {
            let class = ffi::Py_TYPE(obj);
            if class != self.class {
                self.class = class;
                self.offset = member_offset(py, class, &self.name);
            }
            if let Some(offset) = self.offset {
                let value = *((obj as *mut u8).offset(offset) as *mut *mut ffi::PyObject);
                if !value.is_null() {
                    return Ok(Bound::from_borrowed_ptr(py, value));
                }
            }
            Bound::from_borrowed_ptr(py, obj).getattr(&self.name)
        }
    }
}

/// The slot offset of `name` in `class`, when `getattr` would read exactly that slot.
fn member_offset(py: Python<'_>, class: *mut ffi::PyTypeObject, name: &Bound<'_, PyString>) -> Option<ffi::Py_ssize_t> {
    unsafe {
        if (*class).tp_getattro.map(|f| f as *const () as usize) != Some(ffi::PyObject_GenericGetAttr as *const () as usize) {
            return None;
        }
        let descr = ffi::PyObject_GetAttr(class as *mut ffi::PyObject, name.as_ptr());
        if descr.is_null() {
            ffi::PyErr_Clear();
            return None;
        }
        let descr = Bound::from_owned_ptr(py, descr);
        if ffi::Py_TYPE(descr.as_ptr()) != std::ptr::addr_of_mut!(ffi::PyMemberDescr_Type) {
            return None;
        }
        let member = (*(descr.as_ptr() as *mut ffi::PyMemberDescrObject)).d_member as *mut ffi::PyMemberDef;
        if member.is_null() || (*member).type_code != ffi::Py_T_OBJECT_EX {
            return None;
        }
        Some((*member).offset)
    }
}

/// Hashes addresses (objects of one call, not chosen by the answer: no keyed hash needed).
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
        let h = (self.0.rotate_left(5) ^ n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        self.0 = h ^ (h >> 29);
    }
}

type ByAddress<K, V> = HashMap<K, V, BuildHasherDefault<AddressHasher>>;

/// `total > factor * wall` as Python compares an `int` with the `float` product: exactly.
fn exceeds(total: i128, factor: f64, wall: i128) -> bool {
    let bound = factor * (wall as f64); // int → float rounds to nearest, ties to even, as Python's `float(int)`
    if bound.is_nan() {
        return false;
    }
    if bound.is_infinite() {
        return bound < 0.0;
    }
    // For an integer t and a finite x: t > x ⇔ t > ⌊x⌋, and ⌊x⌋ is an exact integer (|x| < 2^127 here).
    total > bound.floor() as i128
}

/// `_wall_and_work_at`: (time any of them ran, Σ durations) of siblings by start, from the columns.
fn wall_and_work(below: &[usize], starts: &Bound<'_, PyList>, durations: &Bound<'_, PyList>) -> Option<(i128, i128)> {
    let (mut total, mut covered) = (0i128, 0i128);
    let (mut cur_start, mut cur_end) = (0i128, 0i128);
    let mut first = true;
    for &k in below {
        let duration = i128::from(int_at(durations, k)?);
        total += duration;
        if duration <= 0 {
            continue;
        }
        let start = i128::from(int_at(starts, k)?);
        let end = start + duration;
        if first || start > cur_end {
            if !first {
                covered += cur_end - cur_start;
            }
            cur_start = start;
            cur_end = end;
            first = false;
        } else if end > cur_end {
            cur_end = end;
        }
    }
    if !first {
        covered += cur_end - cur_start;
    }
    Some((covered, total))
}

/// `_overlapping_at`: how many of these siblings overlap at least one other, by (start, end).
fn overlapping(below: &[usize], starts: &Bound<'_, PyList>, durations: &Bound<'_, PyList>) -> Option<usize> {
    let mut ordered: Vec<(i128, i128)> = Vec::with_capacity(below.len());
    for &k in below {
        let start = i128::from(int_at(starts, k)?);
        ordered.push((start, start + i128::from(int_at(durations, k)?)));
    }
    ordered.sort_unstable(); // spans equal in both are interchangeable: the count is the same
    if ordered.is_empty() {
        return Some(0);
    }
    let mut marked = vec![false; ordered.len()];
    let (mut holder, mut reach) = (0usize, ordered[0].1);
    for i in 1..ordered.len() {
        let (start, end) = ordered[i];
        if start < reach {
            marked[holder] = true;
            marked[i] = true;
        }
        if end > reach {
            holder = i;
            reach = end;
        }
    }
    Some(marked.iter().filter(|&&m| m).count())
}

/// Whether no two of these operations are equal (Python's `len(set(ops)) == len(ops)` for `str`s).
fn all_different(ops: &[&str]) -> bool {
    if ops.len() <= 16 {
        return ops.iter().enumerate().all(|(i, a)| ops[i + 1..].iter().all(|b| a != b));
    }
    let mut seen = HashSet::with_capacity(ops.len());
    ops.iter().all(|op| seen.insert(*op))
}

/// `fan_out_scan`'s answer: the best parallel parents `(position, wall, Σ, how many overlap)`, and the rest's positions.
type Scan = (Vec<(usize, i128, i128, usize)>, Vec<usize>);

/// `(best, rest)`: `best` the `keep` parallel parents of all-different calls that save most, as
/// `(position, wall, Σ, how many overlap)` ordered by (wall − Σ, parent ID); `rest` the other parents with `fewest` children or more,
/// in `parents`' order. None: Python's loop for all of them.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
fn fan_out_scan<'py>(
    py: Python<'py>,
    parents: &Bound<'py, PyAny>,
    kids: &Bound<'py, PyAny>,
    starts: &Bound<'py, PyAny>,
    durations: &Bound<'py, PyAny>,
    spans: &Bound<'py, PyAny>,
    ids: &Bound<'py, PyAny>,
    fewest: usize,
    factor: f64,
    keep: usize,
) -> PyResult<Option<Scan>> {
    let (Ok(parents), Ok(kids), Ok(starts), Ok(durations), Ok(spans), Ok(ids)) = (
        parents.downcast::<PyList>(),
        kids.downcast::<PyList>(),
        starts.downcast::<PyList>(),
        durations.downcast::<PyList>(),
        spans.downcast::<PyList>(),
        ids.downcast::<PyList>(),
    ) else {
        return Ok(None);
    };
    let n = spans.len();
    if kids.len() != n || starts.len() != n || durations.len() != n || ids.len() != n {
        return Ok(None);
    }
    let mut operation = Slot::new(py, "operation");
    let mut candidates: Vec<(i128, &str, usize, i128, i128)> = Vec::new(); // (wall − Σ, parent ID, parent, wall, Σ)
    let mut rest: Vec<usize> = Vec::new();
    let mut below: Vec<usize> = Vec::new();
    let mut names: Vec<Bound<'py, PyAny>> = Vec::new(); // the operations, held while their text is compared
    let mut ops: Vec<&str> = Vec::new();
    for j in 0..parents.len() {
        let Some(p) = position(item(parents, j), n) else {
            return Ok(None);
        };
        let children = item(kids, p);
        if unsafe { ffi::PyList_CheckExact(children) } == 0 {
            return Ok(None); // a parent's children are a list (a leaf's the shared `()`)
        }
        let count = unsafe { ffi::PyList_GET_SIZE(children) } as usize;
        if count < fewest {
            continue;
        }
        below.clear();
        ops.clear();
        names.clear();
        for c in 0..count {
            let Some(k) = position(unsafe { ffi::PyList_GET_ITEM(children, c as ffi::Py_ssize_t) }, n) else {
                return Ok(None);
            };
            below.push(k);
            names.push(operation.get(item(spans, k))?);
        }
        for name in &names {
            let Some(op) = text(name.as_ptr()) else {
                return Ok(None);
            };
            ops.push(op);
        }
        if !all_different(&ops) {
            rest.push(p);
            continue;
        }
        let Some((wall, total)) = wall_and_work(&below, starts, durations) else {
            return Ok(None);
        };
        if wall > 0 && exceeds(total, factor, wall) {
            let Some(id) = text(item(ids, p)) else {
                return Ok(None);
            };
            candidates.push((wall - total, id, p, wall, total));
        } else {
            rest.push(p);
        }
    }
    // The `keep` smallest by (wall − Σ, parent ID): IDs compared as Python compares `str`s (UTF-8 keeps code point order).
    let order = |a: &(i128, &str, usize, i128, i128), b: &(i128, &str, usize, i128, i128)| match a.0.cmp(&b.0) {
        Ordering::Equal => a.1.cmp(b.1),
        other => other,
    };
    if keep == 0 {
        candidates.clear();
    } else if candidates.len() > keep {
        candidates.select_nth_unstable_by(keep - 1, order);
        candidates.truncate(keep);
    }
    candidates.sort_by(order);
    let mut best = Vec::with_capacity(candidates.len());
    for (_, _, p, wall, total) in candidates {
        below.clear();
        let children = item(kids, p);
        for c in 0..unsafe { ffi::PyList_GET_SIZE(children) } {
            below.push(position(unsafe { ffi::PyList_GET_ITEM(children, c) }, n).unwrap_or(0)); // read above: positions
        }
        let Some(count) = overlapping(&below, starts, durations) else {
            return Ok(None);
        };
        best.push((p, wall, total, count));
    }
    Ok(Some((best, rest)))
}

/// One (service, operation) pair's spans: the two `str`s, (out: the first position,) the positions in order (native-endian `u32`s: most groups are
/// never read, and a list would make an `int` per span), and the shortest and longest duration and the most own time.
type PairGroup<'py> = (Bound<'py, PyAny>, Bound<'py, PyAny>, Vec<u32>, i64, i64, i64);
type PairGroupOut<'py> = (Bound<'py, PyAny>, Bound<'py, PyAny>, u32, Bound<'py, PyBytes>, i64, i64, i64);

/// The long-span detector's grouping: the spans of each distinct (service, operation) pair, pairs in the order of
/// their first span, with what `_may_be_long` reads (min and max duration, max own time). None: Python groups them
/// (a service or operation that is not a `str`, a duration or own time that is not an exact 64-bit `int`).
///
/// In the same pass, the spans that may have failed (`failed`'s quick test, for `is_error` to decide): status `"error"`,
/// or attributes holding one of `error_keys`; kept too when that cannot be told here (a status that is not a `str`,
/// attributes that are not a `dict`), since `is_error` decides them all.
#[pyfunction]
fn span_groups<'py>(
    py: Python<'py>,
    spans: &Bound<'py, PyAny>,
    durations: &Bound<'py, PyAny>,
    self_ns: &Bound<'py, PyAny>,
    error_keys: Vec<Bound<'py, PyString>>,
) -> PyResult<Option<(Vec<PairGroupOut<'py>>, Vec<usize>)>> {
    let (Ok(spans), Ok(durations), Ok(self_ns)) =
        (spans.downcast::<PyList>(), durations.downcast::<PyList>(), self_ns.downcast::<PyList>())
    else {
        return Ok(None);
    };
    let n = spans.len();
    if durations.len() != n || self_ns.len() != n || u32::try_from(n).is_err() {
        return Ok(None);
    }
    let (mut service_slot, mut operation_slot) = (Slot::new(py, "service"), Slot::new(py, "operation"));
    let (mut status_slot, mut attributes_slot) = (Slot::new(py, "status"), Slot::new(py, "attributes"));
    let mut maybe_failed: Vec<usize> = Vec::new();
    let mut groups: Vec<PairGroup<'py>> = Vec::new();
    // The pair's objects first (a trace's spans share their strings), their text when those objects are new.
    let mut by_object: ByAddress<(usize, usize), usize> = ByAddress::default();
    let mut by_text: HashMap<(&str, &str), usize> = HashMap::new();
    let mut last: ((usize, usize), usize) = ((0, 0), usize::MAX);
    // Every object whose address is a key stays alive until the end: no address is reused for other text meanwhile.
    let mut alive: Vec<Bound<'py, PyAny>> = Vec::new();
    for i in 0..n {
        let span = item(spans, i);
        let service = service_slot.get(span)?;
        let operation = operation_slot.get(span)?;
        let (Some(duration), Some(own)) = (int_at(durations, i), int_at(self_ns, i)) else {
            return Ok(None);
        };
        let status = status_slot.get(span)?;
        let failing = match text(status.as_ptr()) {
            Some("error") | None => true,
            Some(_) => {
                let attributes = attributes_slot.get(span)?;
                if unsafe { ffi::PyDict_CheckExact(attributes.as_ptr()) } == 0 {
                    true
                } else if unsafe { ffi::PyDict_Size(attributes.as_ptr()) } == 0 {
                    false
                } else {
                    let mut any = false;
                    for key in &error_keys {
                        let found = unsafe { ffi::PyDict_Contains(attributes.as_ptr(), key.as_ptr()) };
                        if found < 0 {
                            return Err(PyErr::fetch(py));
                        }
                        if found == 1 {
                            any = true;
                            break;
                        }
                    }
                    any
                }
            }
        };
        if failing {
            maybe_failed.push(i);
        }
        let objects = (service.as_ptr() as usize, operation.as_ptr() as usize);
        let g = if last.1 != usize::MAX && last.0 == objects {
            last.1
        } else if let Some(&g) = by_object.get(&objects) {
            g
        } else {
            let (Some(service_text), Some(operation_text)) = (text(service.as_ptr()), text(operation.as_ptr())) else {
                return Ok(None);
            };
            let g = match by_text.get(&(service_text, operation_text)) {
                Some(&g) => g,
                None => {
                    groups.push((service.clone(), operation.clone(), Vec::new(), duration, duration, own));
                    by_text.insert((service_text, operation_text), groups.len() - 1);
                    groups.len() - 1
                }
            };
            by_object.insert(objects, g);
            alive.push(service);
            alive.push(operation);
            g
        };
        last = (objects, g);
        let group = &mut groups[g];
        group.2.push(i as u32);
        group.3 = group.3.min(duration);
        group.4 = group.4.max(duration);
        group.5 = group.5.max(own);
    }
    let out = groups
        .into_iter()
        .map(|(service, operation, positions, fastest, longest, most_own)| {
            let raw: Vec<u8> = positions.iter().flat_map(|p| p.to_ne_bytes()).collect();
            (service, operation, positions[0], PyBytes::new(py, &raw), fastest, longest, most_own)
        })
        .collect();
    Ok(Some((out, maybe_failed)))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(fan_out_scan, m)?)?;
    m.add_function(wrap_pyfunction!(span_groups, m)?)?;
    Ok(())
}
