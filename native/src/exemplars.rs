//! One series' exemplars → `Exemplar`s, natively (issue 14, P2: 20k exemplars were ~75 ms of a 100k-span correlation's
//! model stage, ~3.5 µs each in the interpreter).
//!
//! `correlator/sources/prometheus.py` `parse_exemplars` is the reference: its loop over a series' exemplars. This does
//! the same steps in the same order for the usual shapes — exact dicts, labels of exact `str`s, a `float` timestamp
//! that is a whole number of milliseconds (its fast path), a value as an exact `str` — and asks the Python functions
//! given for the rest of the per-ID work (each distinct ID spelling once, in the caches Python fills too). Anything
//! else, or any error on the way, hands the whole series back (`None`) before anything is added to the output, and the
//! Python loop does it (raising its own errors). tests/test_prometheus_same.py compares both on generated answers.

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString};
use pyo3::wrap_pyfunction;

/// An exact str's UTF-8 (strict: lone surrogates → None, as `.encode()` raises).
fn utf8<'a>(value: &'a Bound<'_, PyAny>) -> Option<&'a [u8]> {
    unsafe {
        let p = value.as_ptr();
        if ffi::PyUnicode_CheckExact(p) == 0 {
            return None;
        }
        let mut size: ffi::Py_ssize_t = 0;
        let data = ffi::PyUnicode_AsUTF8AndSize(p, &mut size);
        if data.is_null() {
            ffi::PyErr_Clear();
            return None;
        }
        Some(std::slice::from_raw_parts(data as *const u8, size as usize))
    }
}

fn is_exact_str(value: &Bound<'_, PyAny>) -> bool {
    unsafe { ffi::PyUnicode_CheckExact(value.as_ptr()) != 0 }
}

/// `d.get(key)` of an exact dict, without an error (str keys: no hashing error is possible).
fn get<'py>(dict: &Bound<'py, PyDict>, key: &Bound<'py, PyAny>) -> Option<Bound<'py, PyAny>> {
    unsafe {
        let found = ffi::PyDict_GetItemWithError(dict.as_ptr(), key.as_ptr());
        if found.is_null() {
            ffi::PyErr_Clear();
            None
        } else {
            Some(Bound::from_borrowed_ptr(dict.py(), found))
        }
    }
}

/// `round(x)` of a double (ties to even), for 0 ≤ x < 2⁵², as a double holding that integer.
fn round_half_even(x: f64) -> f64 {
    let floor = x.floor();
    let fraction = x - floor; // exact below 2⁵²
    if fraction < 0.5 {
        floor
    } else if fraction > 0.5 || floor % 2.0 != 0.0 {
        floor + 1.0
    } else {
        floor
    }
}

/// `_seconds_to_ns`'s first case as `parse_exemplars` inlines it: a float of whole milliseconds below 1e10 s.
fn whole_ms_ns(seconds: f64) -> Option<i64> {
    if !(0.0..1e10).contains(&seconds) {
        return None;
    }
    let ms = round_half_even(seconds * 1000.0);
    // `ms / 1000 == raw`: an int below 2⁵³ over 1000, correctly rounded, as Python divides.
    if ms / 1000.0 == seconds {
        (ms as i64).checked_mul(1_000_000) // beyond 64 bits (after 2262): Python's big int
    } else {
        None
    }
}

/// A cached pure function of an ID spelling: `cache[raw]`, or `cache[raw] = of(raw)`.
fn through<'py>(cache: &Bound<'py, PyDict>, of: &Bound<'py, PyAny>, raw: &Bound<'py, PyAny>) -> Option<Bound<'py, PyAny>> {
    if let Some(known) = get(cache, raw) {
        return Some(known);
    }
    let found = of.call1((raw,)).ok()?;
    cache.set_item(raw, &found).ok()?;
    Some(found)
}

/// The first of `names` that `labels` holds: its value.
fn first_label<'py>(labels: &Bound<'py, PyDict>, names: &[Bound<'py, PyAny>]) -> Option<Bound<'py, PyAny>> {
    names.iter().find_map(|name| get(labels, name))
}

/// `"ex-" + blake2b(identity, digest_size=8).hexdigest()` of `prefix + ts + "|" + trace_hex`.
fn exemplar_id<'py>(py: Python<'py>, prefix: &[u8], ts_ns: i64, trace_hex: &[u8]) -> PyResult<Bound<'py, PyAny>> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut state = blake2b_simd::Params::new().hash_length(8).to_state();
    state.update(prefix);
    state.update(ts_ns.to_string().as_bytes());
    state.update(b"|");
    state.update(trace_hex);
    let hash = state.finalize();
    let digest = hash.as_bytes();
    let mut text = [0u8; 19];
    text[..3].copy_from_slice(b"ex-");
    for (i, b) in digest.iter().enumerate() {
        text[3 + 2 * i] = HEX[(b >> 4) as usize];
        text[4 + 2 * i] = HEX[(b & 15) as usize];
    }
    // ASCII: made as such, no UTF-8 decode
    Ok(PyString::new(py, std::str::from_utf8(&text).expect("ASCII")).into_any())
}

/// `parse_exemplars`' loop over one series' `exemplars`, appending to `out` and returning the count skipped for a bad
/// trace ID; None (nothing appended) when the Python loop must do this series.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
fn exemplar_series<'py>(py: Python<'py>, items: &Bound<'py, PyAny>, metric: &Bound<'py, PyAny>, series_labels: &Bound<'py, PyAny>,
                        prefix: &Bound<'py, PyAny>, trace_id_labels: Vec<Bound<'py, PyAny>>,
                        span_id_labels: Vec<Bound<'py, PyAny>>, trace_ids: &Bound<'py, PyDict>, span_ids: &Bound<'py, PyDict>,
                        trace_id_of: &Bound<'py, PyAny>, span_id_of: &Bound<'py, PyAny>, infinities: &Bound<'py, PyDict>,
                        new_exemplar: &Bound<'py, PyAny>, out: &Bound<'py, PyList>) -> PyResult<Option<usize>> {
    Ok(series(py, items, metric, series_labels, prefix, &trace_id_labels, &span_id_labels, trace_ids, span_ids, trace_id_of,
              span_id_of, infinities, new_exemplar, out))
}

#[allow(clippy::too_many_arguments)]
fn series<'py>(py: Python<'py>, items: &Bound<'py, PyAny>, metric: &Bound<'py, PyAny>, series_labels: &Bound<'py, PyAny>,
               prefix: &Bound<'py, PyAny>, trace_id_labels: &[Bound<'py, PyAny>], span_id_labels: &[Bound<'py, PyAny>],
               trace_ids: &Bound<'py, PyDict>, span_ids: &Bound<'py, PyDict>, trace_id_of: &Bound<'py, PyAny>,
               span_id_of: &Bound<'py, PyAny>, infinities: &Bound<'py, PyDict>, new_exemplar: &Bound<'py, PyAny>,
               out: &Bound<'py, PyList>) -> Option<usize> {
    let items = items.downcast_exact::<PyList>().ok()?;
    let prefix = utf8(prefix)?;
    if !trace_id_labels.iter().chain(span_id_labels).all(is_exact_str) {
        return None;
    }
    let (k_labels, k_timestamp, k_value, k_hex) = (PyString::intern(py, "labels").into_any(), PyString::intern(py, "timestamp").into_any(),
                                                   PyString::intern(py, "value").into_any(), PyString::intern(py, "hex"));
    let mut made: Vec<Bound<'py, PyAny>> = Vec::with_capacity(items.len());
    let mut skipped = 0;
    for raw in items.iter() {
        let raw = raw.downcast_exact::<PyDict>().ok()?;
        // `dict(raw.get("labels") or {})`, of exact strs only (`join` refuses other types; a str subclass stays one)
        let ex_labels = match get(raw, &k_labels) {
            Some(labels) if labels.is_truthy().ok()? => {
                let labels = labels.downcast_exact::<PyDict>().ok()?;
                if !labels.iter().all(|(k, v)| is_exact_str(&k) && is_exact_str(&v)) {
                    return None;
                }
                labels.copy().ok()?
            }
            _ => PyDict::new(py),
        };
        let trace_id = match first_label(&ex_labels, trace_id_labels) {
            Some(trace_raw) => through(trace_ids, trace_id_of, &trace_raw)?,
            None => py.None().into_bound(py),
        };
        if trace_id.is_none() {
            skipped += 1;
            continue;
        }
        let span_id = match first_label(&ex_labels, span_id_labels) {
            Some(span_raw) => through(span_ids, span_id_of, &span_raw)?,
            None => py.None().into_bound(py),
        };
        let seconds = get(raw, &k_timestamp)?;
        let ts_ns = if unsafe { ffi::PyFloat_CheckExact(seconds.as_ptr()) } != 0 {
            whole_ms_ns(unsafe { ffi::PyFloat_AS_DOUBLE(seconds.as_ptr()) })?
        } else {
            return None; // `_seconds_to_ns`' other cases are Python's
        };
        let value_text = get(raw, &k_value)?;
        if !is_exact_str(&value_text) {
            return None; // `str(…)` of anything else is Python's
        }
        let value = match get(infinities, &value_text) {
            Some(infinite) => infinite,
            None => unsafe { Bound::from_owned_ptr_or_opt(py, ffi::PyFloat_FromString(value_text.as_ptr())) }.or_else(|| {
                unsafe { ffi::PyErr_Clear() };
                None
            })?,
        };
        let trace_hex = trace_id.getattr(&k_hex).ok()?;
        let id = exemplar_id(py, prefix, ts_ns, utf8(&trace_hex)?).ok()?;
        let exemplar = new_exemplar
            .call1((id, metric, series_labels, ex_labels, value, ts_ns, trace_hex, span_id))
            .ok()?;
        made.push(exemplar);
    }
    for exemplar in made {
        out.append(exemplar).ok()?;
    }
    Some(skipped)
}

/// Adds this module's function to the extension module (lib.rs calls it).
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(exemplar_series, m)?)?;
    Ok(())
}
