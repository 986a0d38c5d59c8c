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
use std::collections::HashSet;

use pyo3::ffi;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyList, PyString};
use pyo3::wrap_pyfunction;

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

/// Item `i` of a list as an exact 64-bit int.
fn int_at(list: &Bound<'_, PyList>, i: usize) -> Option<i64> {
    list.get_item(i).ok().and_then(|v| exact_i64(&v))
}

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

/// Whether no two of these operations are equal (Python's `len(set(ops)) == len(ops)` for `str`s).
fn all_different(ops: &[&str]) -> bool {
    if ops.len() <= 16 {
        return ops.iter().enumerate().all(|(i, a)| ops[i + 1..].iter().all(|b| a != b));
    }
    let mut seen = HashSet::with_capacity(ops.len());
    ops.iter().all(|op| seen.insert(*op))
}

/// `(best, rest)`: `best` the `keep` parallel parents of all-different calls that save most, as
/// `(position, wall, Σ)` ordered by (wall − Σ, parent ID); `rest` the other parents with `fewest` children or more,
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
) -> PyResult<Option<(Vec<(usize, i128, i128)>, Vec<usize>)>> {
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
    let operation = intern!(py, "operation");
    let mut candidates: Vec<(i128, usize, i128, i128)> = Vec::new(); // (wall − Σ, parent, wall, Σ)
    let mut rest: Vec<usize> = Vec::new();
    let mut below: Vec<usize> = Vec::new();
    let mut names: Vec<Bound<'py, PyString>> = Vec::new();
    for parent in parents.iter() {
        let Some(p) = exact_i64(&parent).and_then(|p| usize::try_from(p).ok()).filter(|&p| p < n) else {
            return Ok(None);
        };
        let Ok(children) = kids.get_item(p)?.downcast_into::<PyList>() else {
            return Ok(None); // a parent's children are a list (a leaf's the shared `()`)
        };
        if children.len() < fewest {
            continue;
        }
        below.clear();
        names.clear();
        for child in children.iter() {
            let Some(k) = exact_i64(&child).and_then(|k| usize::try_from(k).ok()).filter(|&k| k < n) else {
                return Ok(None);
            };
            below.push(k);
            let Ok(name) = spans.get_item(k)?.getattr(operation)?.downcast_into::<PyString>() else {
                return Ok(None);
            };
            names.push(name);
        }
        let mut ops: Vec<&str> = Vec::with_capacity(names.len());
        for name in &names {
            match name.to_str() {
                Ok(text) => ops.push(text),
                Err(_) => return Ok(None), // a lone surrogate: Python compares it
            }
        }
        if !all_different(&ops) {
            rest.push(p);
            continue;
        }
        let Some((wall, total)) = wall_and_work(&below, starts, durations) else {
            return Ok(None);
        };
        if wall > 0 && exceeds(total, factor, wall) {
            candidates.push((wall - total, p, wall, total));
        } else {
            rest.push(p);
        }
    }
    // The `keep` smallest by (wall − Σ, parent ID): IDs compared as Python compares `str`s (UTF-8 keeps code point order).
    let mut keyed: Vec<(i128, String, usize, i128, i128)> = Vec::with_capacity(candidates.len().min(keep.max(1) * 4));
    if keep > 0 && !candidates.is_empty() {
        let by_less = |a: &(i128, usize, i128, i128), b: &(i128, usize, i128, i128)| a.0.cmp(&b.0);
        if candidates.len() > keep {
            candidates.select_nth_unstable_by(keep - 1, by_less);
            let cut = candidates[keep - 1].0;
            // Everything tied with the cut may still be among the first `keep` by ID: keep all of them.
            candidates.retain(|c| c.0 <= cut);
        }
        for (less, p, wall, total) in candidates {
            let Ok(id) = ids.get_item(p)?.downcast_into::<PyString>() else {
                return Ok(None);
            };
            let Ok(text) = id.to_str() else {
                return Ok(None);
            };
            keyed.push((less, text.to_owned(), p, wall, total));
        }
        keyed.sort_by(|a, b| match a.0.cmp(&b.0) {
            Ordering::Equal => a.1.cmp(&b.1),
            other => other,
        });
        keyed.truncate(keep);
    }
    Ok(Some((keyed.into_iter().map(|(_, _, p, wall, total)| (p, wall, total)).collect(), rest)))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(fan_out_scan, m)?)?;
    Ok(())
}
