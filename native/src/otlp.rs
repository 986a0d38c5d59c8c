//! Jaeger v3's trace answer (`{"result": TracesData}`, OTLP JSON) → the trace's Span objects, natively.
//!
//! The Python code in `correlator/sources/jaeger.py` (`parse_otlp_answer` → `_otlp_trace`) is the
//! reference; this module builds exactly the Spans, SpanEvents and SpanLinks it builds, in one pass
//! over the answer's bytes, and hands the whole answer back (None) whenever it is not sure:
//!
//! - any shape msgspec's envelope (`_V3Answer`) would not take, and anything else the Python code
//!   would take another way or refuse (a span that is not an object, a truthy non-list `attributes`,
//!   a duplicate key where the Python code reads it, a non-string attribute key, `int()` of a list…);
//! - anything serde_json refuses (lone surrogates, numbers out of range, nesting beyond 128);
//! - a time that does not fit in 64 bits.
//!
//! Values are what Python makes of them: `int()`/`float()`/`str()` of anything but the plain
//! shapes are Python's own (the C API), IDs that are not plain hex of their size go through the
//! Python `_otlp_id` (base64, Unicode), and `arrayValue`/`kvlistValue` through `_any_value`.
//! As in Python, one string object per distinct span ID, operation name and service (P5), and
//! attribute keys interned (`sys.intern`). tests/test_native_otlp.py compares both paths.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;

use pyo3::buffer::PyBuffer;
use pyo3::exceptions::PyTypeError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyList, PyString, PyType};
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// Any failure: the answer goes the Python way (which says what is wrong, if anything is).
fn unsure<E: de::Error>() -> E {
    E::custom("not read natively: Python's answer")
}

/// A JSON string (an object's key, mostly), borrowed from the body when it has no escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> de::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// A value read but not needed: still fully decoded (strings checked), as orjson decodes it.
struct Skip;

impl<'de> DeserializeSeed<'de> for Skip {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Skip {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Skip)?.is_some() {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_key_seed(Skip)?.is_some() {
            map.next_value_seed(Skip)?;
        }
        Ok(())
    }
}

/// One JSON value as read: scalars kept in Rust (no Python object unless one is needed), arrays and
/// objects made into Python objects as orjson makes them.
enum Val<'de> {
    Null,
    Bool(bool),
    Int(i64),
    /// Above i64::MAX (orjson: an int up to u64::MAX).
    UInt(u64),
    Float(f64),
    Str(Cow<'de, str>),
    Obj(PyObject),
}

/// `orjson.loads` of one value: dicts (last duplicate wins, as there), lists, str, int, float, bool, None.
#[derive(Clone, Copy)]
struct AnyPy<'py>(Python<'py>);

impl<'de, 'py> DeserializeSeed<'de> for AnyPy<'py> {
    type Value = PyObject;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<PyObject, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de, 'py> Visitor<'de> for AnyPy<'py> {
    type Value = PyObject;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<PyObject, E> {
        Ok(val_py(self.0, &Val::Bool(v)))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<PyObject, E> {
        Ok(val_py(self.0, &Val::Int(v)))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<PyObject, E> {
        Ok(val_py(self.0, &Val::UInt(v)))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<PyObject, E> {
        Ok(val_py(self.0, &Val::Float(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<PyObject, E> {
        Ok(PyString::new(self.0, v).into_any().unbind())
    }
    fn visit_unit<E: de::Error>(self) -> Result<PyObject, E> {
        Ok(self.0.None())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<PyObject, A::Error> {
        let list = PyList::empty(self.0);
        while let Some(item) = seq.next_element_seed(self)? {
            list.append(item).map_err(|_| unsure())?;
        }
        Ok(list.into_any().unbind())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<PyObject, A::Error> {
        let dict = PyDict::new(self.0);
        while let Some(key) = map.next_key::<Key<'de>>()? {
            let value = map.next_value_seed(self)?;
            dict.set_item(PyString::new(self.0, &key.0), value).map_err(|_| unsure())?;
        }
        Ok(dict.into_any().unbind())
    }
}

/// Reads a `Val`.
#[derive(Clone, Copy)]
struct ValSeed<'py>(Python<'py>);

impl<'de, 'py> DeserializeSeed<'de> for ValSeed<'py> {
    type Value = Val<'de>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Val<'de>, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de, 'py> Visitor<'de> for ValSeed<'py> {
    type Value = Val<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Val<'de>, E> {
        Ok(Val::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Val<'de>, E> {
        Ok(Val::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Val<'de>, E> {
        Ok(if v <= i64::MAX as u64 { Val::Int(v as i64) } else { Val::UInt(v) })
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Val<'de>, E> {
        Ok(Val::Float(v))
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Val<'de>, E> {
        Ok(Val::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Val<'de>, E> {
        Ok(Val::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Val<'de>, E> {
        Ok(Val::Str(Cow::Owned(v)))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Val<'de>, E> {
        Ok(Val::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Val<'de>, A::Error> {
        AnyPy(self.0).visit_seq(seq).map(Val::Obj)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Val<'de>, A::Error> {
        AnyPy(self.0).visit_map(map).map(Val::Obj)
    }
}

/// The value of exactly 16 hex digits (either case), else None.
fn hex_u64(raw: &str) -> Option<u64> {
    if raw.len() != 16 {
        return None;
    }
    let mut value: u64 = 0;
    for b in raw.bytes() {
        let digit = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            b'A'..=b'F' => b - b'A' + 10,
            _ => return None,
        };
        value = value << 4 | u64::from(digit);
    }
    Some(value)
}

/// A new str of ASCII text, lower-cased (as `str.lower()` of it), copied in without a UTF-8 decode.
fn lower_ascii(py: Python<'_>, text: &[u8]) -> Option<PyObject> {
    debug_assert!(text.is_ascii());
    unsafe {
        let obj = owned(py, ffi::PyUnicode_New(text.len() as ffi::Py_ssize_t, 127))?;
        let data = ffi::PyUnicode_DATA(obj.as_ptr()) as *mut u8;
        for (i, &b) in text.iter().enumerate() {
            *data.add(i) = b.to_ascii_lowercase();
        }
        Some(obj)
    }
}

/// A new reference from the C API, or None (the Python error cleared: the answer goes the Python way).
fn owned(py: Python<'_>, ptr: *mut ffi::PyObject) -> Option<PyObject> {
    if ptr.is_null() {
        drop(PyErr::fetch(py));
        None
    } else {
        Some(unsafe { PyObject::from_owned_ptr(py, ptr) })
    }
}

fn val_py(py: Python<'_>, v: &Val<'_>) -> PyObject {
    match v {
        Val::Null => py.None(),
        Val::Bool(b) => PyBool::new(py, *b).to_owned().into_any().unbind(),
        Val::Int(i) => unsafe { PyObject::from_owned_ptr(py, ffi::PyLong_FromLongLong(*i)) },
        Val::UInt(u) => unsafe { PyObject::from_owned_ptr(py, ffi::PyLong_FromUnsignedLongLong(*u)) },
        Val::Float(f) => PyFloat::new(py, *f).into_any().unbind(),
        Val::Str(s) => PyString::new(py, s).into_any().unbind(),
        Val::Obj(o) => o.clone_ref(py),
    }
}

/// Python's truth value of the decoded value.
fn truthy(py: Python<'_>, v: &Val<'_>) -> Option<bool> {
    Some(match v {
        Val::Null => false,
        Val::Bool(b) => *b,
        Val::Int(i) => *i != 0,
        Val::UInt(_) => true,
        Val::Float(f) => *f != 0.0,
        Val::Str(s) => !s.is_empty(),
        Val::Obj(o) => match unsafe { ffi::PyObject_IsTrue(o.as_ptr()) } {
            -1 => {
                drop(PyErr::fetch(py));
                return None;
            }
            t => t == 1,
        },
    })
}

/// `[-]digits` within i64 (no `int()` subtleties: `+`, spaces, `_`, Unicode digits, 4300 digits): its value.
fn plain_int(s: &str) -> Option<i64> {
    let (negative, digits) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    let mut value: u64 = 0; // 19 digits stay below u64::MAX
    for b in digits.bytes() {
        if !b.is_ascii_digit() {
            return None;
        }
        value = value * 10 + u64::from(b - b'0');
    }
    // Beyond i64: Python's int() then.
    if negative {
        if value <= i64::MAX as u64 + 1 { Some((value as i64).wrapping_neg()) } else { None }
    } else {
        i64::try_from(value).ok()
    }
}

/// `int(value)`, as a Python int; None where Python raises.
fn int_py(py: Python<'_>, v: &Val<'_>) -> Option<PyObject> {
    match v {
        Val::Int(_) | Val::UInt(_) => Some(val_py(py, v)),
        Val::Bool(b) => Some(val_py(py, &Val::Int(*b as i64))),
        Val::Str(s) => match plain_int(s) {
            Some(i) => Some(val_py(py, &Val::Int(i))),
            None => owned(py, unsafe { ffi::PyNumber_Long(val_py(py, v).as_ptr()) }),
        },
        Val::Float(_) => owned(py, unsafe { ffi::PyNumber_Long(val_py(py, v).as_ptr()) }),
        Val::Null | Val::Obj(_) => None, // int(None), int([…]), int({…}): TypeError
    }
}

/// `int(value)` of a time: None where Python raises or the value is outside 64 bits.
fn int_i64(py: Python<'_>, v: &Val<'_>) -> Option<i64> {
    match v {
        Val::Int(i) => Some(*i),
        Val::Str(s) => match plain_int(s) {
            Some(i) => Some(i),
            None => int_py(py, v)?.extract::<i64>(py).ok(),
        },
        _ => int_py(py, v)?.extract::<i64>(py).ok(),
    }
}

/// `float(value)`; None where Python raises.
fn float_py(py: Python<'_>, v: &Val<'_>) -> Option<PyObject> {
    match v {
        Val::Float(_) => Some(val_py(py, v)),
        Val::Bool(b) => Some(PyFloat::new(py, if *b { 1.0 } else { 0.0 }).into_any().unbind()),
        Val::Int(_) | Val::UInt(_) | Val::Str(_) => owned(py, unsafe { ffi::PyNumber_Float(val_py(py, v).as_ptr()) }),
        Val::Null | Val::Obj(_) => None,
    }
}

/// `str(value)`.
fn str_py(py: Python<'_>, v: &Val<'_>) -> Option<PyObject> {
    match v {
        Val::Str(s) => Some(PyString::new(py, s).into_any().unbind()),
        _ => owned(py, unsafe { ffi::PyObject_Str(val_py(py, v).as_ptr()) }),
    }
}

/// The slot offsets of a frozen, slotted dataclass's fields, in the order given; checked to be plain
/// object slots (what `object.__setattr__` sets).
fn slot_offsets(class: &Bound<'_, PyType>, fields: &[String], expected: &[&str]) -> PyResult<Vec<isize>> {
    if fields.iter().map(String::as_str).ne(expected.iter().copied()) {
        return Err(PyTypeError::new_err(format!("fields must be {:?}", expected)));
    }
    let mut offsets = Vec::with_capacity(fields.len());
    for name in fields {
        let descriptor = class.getattr(name.as_str())?;
        unsafe {
            if ffi::Py_TYPE(descriptor.as_ptr()) != std::ptr::addr_of_mut!(ffi::PyMemberDescr_Type) {
                return Err(PyTypeError::new_err(format!("{} is not a slot", name)));
            }
            let member = (*(descriptor.as_ptr() as *mut ffi::PyMemberDescrObject)).d_member as *const ffi::PyMemberDef;
            if (*member).type_code != ffi::Py_T_OBJECT_EX || (*member).flags & ffi::Py_READONLY != 0 {
                return Err(PyTypeError::new_err(format!("{} is not a writable object slot", name)));
            }
            offsets.push((*member).offset);
        }
    }
    Ok(offsets)
}

/// Whether the cyclic collector could reach anything through `value` (a str, an int, None, a dict of strs: no).
fn gc_visible(value: *mut ffi::PyObject) -> bool {
    unsafe { !value.is_null() && ffi::PyObject_IS_GC(value) != 0 && ffi::PyObject_GC_IsTracked(value) != 0 }
}

/// Untracks `obj` (a new object of ours) when none of `values` is tracked: no cycle can pass through it, as
/// CPython untracks such tuples and dicts, and every collection while a big trace is alive would otherwise walk
/// each span (the young collection right after the decode did, each time: a sixth of a 1k-span decode).
fn untrack_if_atomic(obj: &PyObject, values: impl IntoIterator<Item = *mut ffi::PyObject>) {
    unsafe {
        if ffi::PyObject_GC_IsTracked(obj.as_ptr()) != 0 && !values.into_iter().any(gc_visible) {
            ffi::PyObject_GC_UnTrack(obj.as_ptr() as *mut std::ffi::c_void);
        }
    }
}

/// A new instance with its slots set, as the dataclass `__init__` sets them (`object.__setattr__`); untracked
/// when it holds nothing the collector tracks (`untrack_if_atomic`).
fn build(py: Python<'_>, class: &Py<PyType>, offsets: &[isize], values: Vec<PyObject>) -> Option<PyObject> {
    unsafe {
        let obj = owned(py, ffi::PyType_GenericAlloc(class.as_ptr() as *mut ffi::PyTypeObject, 0))?;
        let slot_of = |offset: isize| (obj.as_ptr() as *mut u8).offset(offset) as *mut *mut ffi::PyObject;
        for (offset, value) in offsets.iter().zip(values) {
            let old = std::ptr::replace(slot_of(*offset), value.into_ptr());
            ffi::Py_XDECREF(old);
        }
        untrack_if_atomic(&obj, offsets.iter().map(|&offset| *slot_of(offset)));
        Some(obj)
    }
}

/// A tuple of `items`, untracked when they are (what the collector would find out at its first look).
fn tuple_of(py: Python<'_>, items: Vec<PyObject>) -> Option<PyObject> {
    unsafe {
        // Filled straight from the C API: no reference counting per item on the way (the spans' tuple is 100k).
        let tuple = owned(py, ffi::PyTuple_New(items.len() as ffi::Py_ssize_t))?;
        let mut visible = false;
        for (i, item) in items.into_iter().enumerate() {
            let item = item.into_ptr();
            visible = visible || gc_visible(item);
            ffi::PyTuple_SET_ITEM(tuple.as_ptr(), i as ffi::Py_ssize_t, item);
        }
        if !visible && ffi::PyObject_GC_IsTracked(tuple.as_ptr()) != 0 {
            ffi::PyObject_GC_UnTrack(tuple.as_ptr() as *mut std::ffi::c_void);
        }
        Some(tuple)
    }
}

const SPAN_FIELDS: [&str; 12] = ["span_id", "parent_span_id", "service", "operation", "start_ns", "end_ns", "kind", "status",
                                 "status_message", "attributes", "events", "links"];
const SERVICE_SLOT: usize = 2;
const EVENT_FIELDS: [&str; 3] = ["name", "time_ns", "attributes"];
const LINK_FIELDS: [&str; 2] = ["trace_id", "span_id"];
const KIND_NAMES: [&str; 6] = ["SPAN_KIND_UNSPECIFIED", "SPAN_KIND_INTERNAL", "SPAN_KIND_SERVER", "SPAN_KIND_CLIENT",
                               "SPAN_KIND_PRODUCER", "SPAN_KIND_CONSUMER"];
const ANY_VALUE_KEYS: [&str; 7] = ["stringValue", "boolValue", "intValue", "doubleValue", "bytesValue", "arrayValue", "kvlistValue"];

/// What every answer's decode shares: the classes, their slots, the constant strings, the Python fallbacks.
#[pyclass(module = "correlator_native")]
pub struct OtlpDecoder {
    span_class: Py<PyType>,
    span_slots: Vec<isize>,
    event_class: Py<PyType>,
    event_slots: Vec<isize>,
    link_class: Py<PyType>,
    link_slots: Vec<isize>,
    kinds: Vec<PyObject>,
    error: PyObject,
    ok: PyObject,
    unset: PyObject,
    empty: PyObject,
    unknown_service: PyObject,
    error_key: PyObject,
    true_text: PyObject,
    any_value: PyObject,
    otlp_id: PyObject,
}

#[pymethods]
impl OtlpDecoder {
    /// The Span, SpanEvent and SpanLink classes with their field names (checked against what this code
    /// builds), the kind names of `_KINDS` (0…5), and the Python `_any_value` and `_otlp_id`.
    #[new]
    #[allow(clippy::too_many_arguments)]
    fn new(py: Python<'_>, span_class: Bound<'_, PyType>, span_fields: Vec<String>, event_class: Bound<'_, PyType>,
           event_fields: Vec<String>, link_class: Bound<'_, PyType>, link_fields: Vec<String>, kinds: Vec<Py<PyString>>,
           any_value: PyObject, otlp_id: PyObject) -> PyResult<Self> {
        if kinds.len() != 6 {
            return Err(PyTypeError::new_err("six kinds (0…5)"));
        }
        let text = |s: &str| PyString::intern(py, s).into_any().unbind();
        Ok(OtlpDecoder {
            span_slots: slot_offsets(&span_class, &span_fields, &SPAN_FIELDS)?,
            event_slots: slot_offsets(&event_class, &event_fields, &EVENT_FIELDS)?,
            link_slots: slot_offsets(&link_class, &link_fields, &LINK_FIELDS)?,
            span_class: span_class.unbind(),
            event_class: event_class.unbind(),
            link_class: link_class.unbind(),
            kinds: kinds.into_iter().map(|k| k.into_any()).collect(),
            error: text("error"),
            ok: text("ok"),
            unset: text("unset"),
            empty: text(""),
            unknown_service: text("unknown_service"),
            error_key: text("error"),
            true_text: text("true"),
            any_value,
            otlp_id,
        })
    }

    /// The spans of `{"result": TracesData}` that belong to `trace_id_hex` (or carry no trace ID), as
    /// `_otlp_trace` makes them, in a tuple; None when Python must parse the answer.
    fn spans(&self, py: Python<'_>, body: PyBuffer<u8>, trace_id_hex: &str) -> PyResult<Option<PyObject>> {
        if !body.is_c_contiguous() {
            return Ok(None);
        }
        // Read-only here, and its owner is kept alive by the caller for this call (the GIL is held throughout).
        let raw: &[u8] = unsafe { std::slice::from_raw_parts(body.buf_ptr() as *const u8, body.len_bytes()) };
        // UTF-8 checked once for the whole body (orjson refuses a body that is not), not string by string.
        let text = match std::str::from_utf8(raw) {
            Ok(text) => text,
            Err(_) => return Ok(None),
        };
        let mut run = Run {
            py,
            dec: self,
            trace_hex: trace_id_hex,
            ids: HashMap::new(),
            hex_ids: HashMap::new(),
            trace_ids: HashMap::new(),
            last_trace: None,
            names: HashMap::new(),
            keys: HashMap::new(),
            services: HashMap::new(),
            spans: Vec::new(),
        };
        let mut deserializer = serde_json::Deserializer::from_str(text);
        let read = Top { run: &mut run }.deserialize(&mut deserializer).and_then(|()| deserializer.end());
        if read.is_err() {
            return Ok(None);
        }
        Ok(tuple_of(py, std::mem::take(&mut run.spans)))
    }
}

/// One answer's decode: what is shared within it (as `_otlp_trace`'s dicts), and the spans so far.
struct Run<'r, 'py> {
    py: Python<'py>,
    dec: &'r OtlpDecoder,
    trace_hex: &'r str,
    /// Raw span ID text → its normal form, or None when not a valid ID (parents share their span's string).
    ids: HashMap<String, Option<PyObject>>,
    /// The same for IDs of 16 hex digits, by their value (None: all zeros, not an ID).
    hex_ids: HashMap<u64, Option<PyObject>>,
    /// Raw trace ID text → None: not a valid ID (no filter); Some(same trace?).
    trace_ids: HashMap<String, Option<bool>>,
    /// The last trace ID text and whether it was another trace's.
    last_trace: Option<(String, bool)>,
    names: HashMap<String, PyObject>,
    keys: HashMap<String, PyObject>,
    services: HashMap<String, PyObject>,
    spans: Vec<PyObject>,
}

/// A span's fields as read, before they make its Span.
#[derive(Default)]
struct RawSpan<'de> {
    trace_id: Option<Val<'de>>,
    span_id: Option<Val<'de>>,
    parent: Option<Val<'de>>,
    name: Option<Val<'de>>,
    kind: Option<Val<'de>>,
    start: Option<Val<'de>>,
    end: Option<Val<'de>>,
    status: Option<(Option<Val<'de>>, Option<Val<'de>>)>,
    attributes: Option<PyObject>,
    events: Vec<(PyObject, Option<i64>, PyObject)>,
    links: Vec<PyObject>,
}

impl<'r, 'py> Run<'r, 'py> {
    /// `_otlp_id(raw, size)`: plain hex of the size here, anything else by the Python function.
    fn otlp_id(&self, raw: &str, size: usize) -> Option<Option<PyObject>> {
        if raw.is_empty() {
            return Some(None);
        }
        if raw.len() == size * 2 && raw.bytes().all(|b| b.is_ascii_hexdigit()) {
            if raw.bytes().all(|b| b == b'0') {
                return Some(None);
            }
            return Some(Some(lower_ascii(self.py, raw.as_bytes())?));
        }
        let found = self.dec.otlp_id.bind(self.py).call1((raw, size)).ok()?;
        Some(if found.is_none() { None } else { Some(found.unbind()) })
    }

    /// A span ID (or a parent's) through the answer's table: one string per distinct ID.
    fn span_id(&mut self, raw: &str) -> Option<Option<PyObject>> {
        if let Some(value) = hex_u64(raw) {
            // The usual spelling, 16 hex digits: looked up by its value (no key string to make, compare or free);
            // the normal form is the lower-case text, whatever case the answer used.
            if let Some(known) = self.hex_ids.get(&value) {
                return Some(known.as_ref().map(|o| o.clone_ref(self.py)));
            }
            let id = if value == 0 { None } else { Some(lower_ascii(self.py, raw.as_bytes())?) };
            self.hex_ids.insert(value, id.as_ref().map(|o| o.clone_ref(self.py)));
            return Some(id);
        }
        if let Some(known) = self.ids.get(raw) {
            return Some(known.as_ref().map(|o| o.clone_ref(self.py)));
        }
        let id = self.otlp_id(raw, 8)?;
        self.ids.insert(raw.to_owned(), id.as_ref().map(|o| o.clone_ref(self.py)));
        Some(id)
    }

    /// Whether a span with this trace ID text is another trace's (then dropped).
    fn other_trace(&mut self, raw: &str) -> Option<bool> {
        // Mostly one trace ID throughout: compared before any hashing.
        if let Some((last, other)) = &self.last_trace {
            if last == raw {
                return Some(*other);
            }
        }
        let other = self.other_trace_of(raw)?;
        self.last_trace = Some((raw.to_owned(), other));
        Some(other)
    }

    fn other_trace_of(&mut self, raw: &str) -> Option<bool> {
        if let Some(known) = self.trace_ids.get(raw) {
            return Some(*known == Some(false));
        }
        let same = match self.otlp_id(raw, 16)? {
            None => None,
            Some(id) => Some(id.bind(self.py).downcast::<PyString>().ok()?.to_str().ok()? == self.trace_hex),
        };
        self.trace_ids.insert(raw.to_owned(), same);
        Some(same == Some(false))
    }

    fn key(&mut self, key: &str) -> PyObject {
        if let Some(known) = self.keys.get(key) {
            return known.clone_ref(self.py);
        }
        let interned = PyString::intern(self.py, key).into_any().unbind();
        self.keys.insert(key.to_owned(), interned.clone_ref(self.py));
        interned
    }

    /// One string object per distinct text in `table`.
    fn shared(py: Python<'_>, table: &mut HashMap<String, PyObject>, text: PyObject) -> Option<PyObject> {
        let s: String = text.extract(py).ok()?;
        if let Some(known) = table.get(&s) {
            return Some(known.clone_ref(py));
        }
        table.insert(s, text.clone_ref(py));
        Some(text)
    }

    fn new_dict(&self) -> PyObject {
        PyDict::new(self.py).into_any().unbind()
    }

    /// The span's Span (service set when its resource is done), unless `_otlp_trace` skips it.
    fn span(&mut self, raw: RawSpan<'_>) -> Option<()> {
        let py = self.py;
        let dec = self.dec;
        let span_id = match &raw.span_id {
            Some(Val::Str(s)) => match self.span_id(s)? {
                Some(id) => id,
                None => return Some(()),
            },
            _ => return Some(()),
        };
        if let Some(Val::Str(t)) = &raw.trace_id {
            if !t.is_empty() && self.other_trace(t)? {
                return Some(());
            }
        }
        let attributes = match raw.attributes {
            Some(a) => a,
            None => self.new_dict(),
        };
        let (code, message) = raw.status.unwrap_or((None, None));
        let start = match &raw.start {
            Some(v) if truthy(py, v)? => int_i64(py, v)?,
            _ => 0,
        };
        let mut events = raw.events;
        // `_by_time`: stable, so simultaneous events keep their order.
        if events.windows(2).any(|w| w[0].1.unwrap_or(start) > w[1].1.unwrap_or(start)) {
            events.sort_by_key(|e| e.1.unwrap_or(start));
        }
        let mut built = Vec::with_capacity(events.len());
        for (name, time, attrs) in events {
            let time = val_py(py, &Val::Int(time.unwrap_or(start)));
            built.push(build(py, &dec.event_class, &dec.event_slots, vec![name, time, attrs])?);
        }
        let events = tuple_of(py, built)?;
        let links = tuple_of(py, raw.links)?;
        let parent = match &raw.parent {
            Some(Val::Str(p)) if !p.is_empty() => self.span_id(p)?,
            _ => None,
        };
        let operation = match &raw.name {
            Some(v) if truthy(py, v)? => match v {
                Val::Str(s) => match self.names.get(s.as_ref()) {
                    Some(known) => known.clone_ref(py),
                    None => {
                        let text = PyString::new(py, s).into_any().unbind();
                        self.names.insert(s.to_string(), text.clone_ref(py));
                        text
                    }
                },
                other => Self::shared(py, &mut self.names, str_py(py, other)?)?,
            },
            _ => Self::shared(py, &mut self.names, dec.empty.clone_ref(py))?,
        };
        let end = match &raw.end {
            Some(v) if truthy(py, v)? => int_i64(py, v)?,
            _ => start,
        };
        let kind = match &raw.kind {
            None => 0,
            Some(Val::Int(i)) if (0..6).contains(i) => *i as usize,
            Some(Val::Bool(b)) => *b as usize,
            Some(Val::Str(s)) => KIND_NAMES.iter().position(|n| *n == s.as_ref()).unwrap_or(0),
            Some(_) => 0,
        };
        let code = code.unwrap_or(Val::Int(0));
        let status = if matches!(&code, Val::Int(2)) || matches!(&code, Val::Float(f) if *f == 2.0)
            || matches!(&code, Val::Str(s) if s == "STATUS_CODE_ERROR") || self.error_attribute(&attributes)? {
            &dec.error
        } else if matches!(&code, Val::Int(1) | Val::Bool(true)) || matches!(&code, Val::Float(f) if *f == 1.0)
            || matches!(&code, Val::Str(s) if s == "STATUS_CODE_OK") {
            &dec.ok
        } else {
            &dec.unset
        };
        let message = match &message {
            Some(v) if truthy(py, v)? => val_py(py, v),
            _ => py.None(),
        };
        let span = build(py, &dec.span_class, &dec.span_slots, vec![
            span_id, parent.unwrap_or_else(|| py.None()), py.None(), operation, val_py(py, &Val::Int(start)),
            val_py(py, &Val::Int(end)), dec.kinds[kind].clone_ref(py), status.clone_ref(py), message, attributes,
            events, links,
        ])?;
        self.spans.push(span);
        Some(())
    }

    /// `attributes.get("error") in (True, "true")`.
    fn error_attribute(&self, attributes: &PyObject) -> Option<bool> {
        unsafe {
            let value = ffi::PyDict_GetItem(attributes.as_ptr(), self.dec.error_key.as_ptr());
            if value.is_null() {
                return Some(false);
            }
            for wanted in [ffi::Py_True(), self.dec.true_text.as_ptr()] {
                match ffi::PyObject_RichCompareBool(wanted, value, ffi::Py_EQ) {
                    1 => return Some(true),
                    0 => {}
                    _ => {
                        drop(PyErr::fetch(self.py));
                        return None;
                    }
                }
            }
            Some(false)
        }
    }

    /// `_any_value` of the value object's members as read (the first present in its order wins).
    fn any_value(&self, mut members: Vec<Option<Val<'_>>>) -> Option<PyObject> {
        let py = self.py;
        let found = members.iter().position(|m| m.is_some());
        let which = match found {
            Some(which) => which,
            None => return Some(py.None()),
        };
        let value = members[which].take()?;
        match which {
            0 | 4 => Some(val_py(py, &value)),
            1 => Some(PyBool::new(py, truthy(py, &value)?).to_owned().into_any().unbind()),
            2 => int_py(py, &value),
            3 => float_py(py, &value),
            _ => {
                let object = PyDict::new(py);
                object.set_item(ANY_VALUE_KEYS[which], val_py(py, &value)).ok()?;
                self.dec.any_value.bind(py).call1((object,)).ok().map(Bound::unbind)
            }
        }
    }

    /// Every span of the resource gets its service (known once its resource is read, in any member order).
    fn set_services(&mut self, first: usize, service: &PyObject) {
        let offset = self.dec.span_slots[SERVICE_SLOT];
        for span in &self.spans[first..] {
            unsafe {
                let slot = (span.as_ptr() as *mut u8).offset(offset) as *mut *mut ffi::PyObject;
                let old = std::ptr::replace(slot, service.clone_ref(self.py).into_ptr());
                ffi::Py_XDECREF(old);
            }
        }
    }
}

/// Declares a seed that borrows the run, with its visitor's `expecting` text.
macro_rules! seed {
    ($name:ident, $what:expr) => {
        struct $name<'s, 'r, 'py> {
            run: &'s mut Run<'r, 'py>,
        }
        impl<'de, 's, 'r, 'py> DeserializeSeed<'de> for $name<'s, 'r, 'py> {
            type Value = <Self as Visitor<'de>>::Value;
            fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
                deserializer.deserialize_any(self)
            }
        }
        impl<'s, 'r, 'py> $name<'s, 'r, 'py> {
            fn what(f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str($what)
            }
        }
    };
}

/// Reads an object's members: `on(index of a wanted name, map)` reads a wanted member, others are skipped;
/// a wanted member seen twice is unsure (the Python reads the last one; rare enough to leave to it).
fn members<'de, A: MapAccess<'de>>(map: &mut A, names: &[&str],
                                   mut on: impl FnMut(usize, &mut A) -> Result<(), A::Error>) -> Result<(), A::Error> {
    let mut seen = 0u32;
    while let Some(key) = map.next_key::<Key<'de>>()? {
        match names.iter().position(|n| *n == key.0.as_ref()) {
            Some(i) => {
                if seen & (1 << i) != 0 {
                    return Err(unsure());
                }
                seen |= 1 << i;
                on(i, map)?;
            }
            None => map.next_value_seed(Skip)?,
        }
    }
    Ok(())
}

seed!(Top, "the answer object");
impl<'de, 's, 'r, 'py> Visitor<'de> for Top<'s, 'r, 'py> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        Self::what(f)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let run = self.run;
        let mut found = false;
        members(&mut map, &["result"], |_, map| {
            found = true;
            map.next_value_seed(TracesData { run: &mut *run })
        })?;
        if found {
            Ok(())
        } else {
            Err(unsure())
        }
    }
}

seed!(TracesData, "TracesData");
impl<'de, 's, 'r, 'py> Visitor<'de> for TracesData<'s, 'r, 'py> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        Self::what(f)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let run = self.run;
        members(&mut map, &["resourceSpans"], |_, map| map.next_value_seed(ListOf { run: &mut *run, item: Item::Resource }))
    }
}

/// What a list holds.
#[derive(Clone, Copy)]
enum Item {
    Resource,
    Scope,
    Span,
}

/// `null` or a list of `item`s.
struct ListOf<'s, 'r, 'py> {
    run: &'s mut Run<'r, 'py>,
    item: Item,
}

impl<'de, 's, 'r, 'py> DeserializeSeed<'de> for ListOf<'s, 'r, 'py> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de, 's, 'r, 'py> Visitor<'de> for ListOf<'s, 'r, 'py> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("null or a list")
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let run = self.run;
        loop {
            let more = match self.item {
                Item::Resource => seq.next_element_seed(ResourceSpans { run: &mut *run })?,
                Item::Scope => seq.next_element_seed(ScopeSpans { run: &mut *run })?,
                Item::Span => seq.next_element_seed(SpanSeed { run: &mut *run })?,
            };
            if more.is_none() {
                return Ok(());
            }
        }
    }
}

seed!(ResourceSpans, "ResourceSpans");
impl<'de, 's, 'r, 'py> Visitor<'de> for ResourceSpans<'s, 'r, 'py> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        Self::what(f)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let run = self.run;
        let first = run.spans.len();
        let mut service = None;
        members(&mut map, &["resource", "scopeSpans"], |i, map| {
            if i == 0 {
                service = Some(map.next_value_seed(Resource { run: &mut *run })?);
                Ok(())
            } else {
                map.next_value_seed(ListOf { run: &mut *run, item: Item::Scope })
            }
        })?;
        let service = service.unwrap_or_else(|| run.dec.unknown_service.clone_ref(run.py));
        run.set_services(first, &service);
        Ok(())
    }
}

seed!(Resource, "a resource");
impl<'de, 's, 'r, 'py> Visitor<'de> for Resource<'s, 'r, 'py> {
    type Value = PyObject;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        Self::what(f)
    }
    fn visit_unit<E: de::Error>(self) -> Result<PyObject, E> {
        Ok(self.run.dec.unknown_service.clone_ref(self.run.py))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<PyObject, A::Error> {
        let run = self.run;
        let py = run.py;
        let mut attributes = None;
        members(&mut map, &["attributes"], |_, map| {
            attributes = Some(map.next_value_seed(Attributes { run: &mut *run })?);
            Ok(())
        })?;
        // str(resource.get("service.name") or "unknown_service")
        let service = match attributes {
            None => None,
            Some(a) => a.bind(py).downcast::<PyDict>().map_err(|_| unsure())?.get_item("service.name").map_err(|_| unsure())?,
        };
        match service {
            Some(s) if s.is_truthy().map_err(|_| unsure())? => {
                let text = owned(py, unsafe { ffi::PyObject_Str(s.as_ptr()) }).ok_or_else(unsure)?;
                Run::shared(py, &mut run.services, text).ok_or_else(unsure)
            }
            _ => Ok(run.dec.unknown_service.clone_ref(py)),
        }
    }
}

seed!(ScopeSpans, "ScopeSpans");
impl<'de, 's, 'r, 'py> Visitor<'de> for ScopeSpans<'s, 'r, 'py> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        Self::what(f)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let run = self.run;
        members(&mut map, &["spans"], |_, map| map.next_value_seed(ListOf { run: &mut *run, item: Item::Span }))
    }
}

const SPAN_MEMBERS: [&str; 11] = ["traceId", "spanId", "parentSpanId", "name", "kind", "startTimeUnixNano", "endTimeUnixNano",
                                  "status", "attributes", "events", "links"];

seed!(SpanSeed, "a span");
impl<'de, 's, 'r, 'py> Visitor<'de> for SpanSeed<'s, 'r, 'py> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        Self::what(f)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let run = self.run;
        let py = run.py;
        let mut raw = RawSpan::default();
        members(&mut map, &SPAN_MEMBERS, |i, map| {
            match i {
                0 => raw.trace_id = Some(map.next_value_seed(ValSeed(py))?),
                1 => raw.span_id = Some(map.next_value_seed(ValSeed(py))?),
                2 => raw.parent = Some(map.next_value_seed(ValSeed(py))?),
                3 => raw.name = Some(map.next_value_seed(ValSeed(py))?),
                4 => raw.kind = Some(map.next_value_seed(ValSeed(py))?),
                5 => raw.start = Some(map.next_value_seed(ValSeed(py))?),
                6 => raw.end = Some(map.next_value_seed(ValSeed(py))?),
                7 => raw.status = map.next_value_seed(Status { py })?,
                8 => raw.attributes = Some(map.next_value_seed(Attributes { run: &mut *run })?),
                9 => raw.events = map.next_value_seed(Events { run: &mut *run })?,
                _ => raw.links = map.next_value_seed(Links { run: &mut *run })?,
            }
            Ok(())
        })?;
        run.span(raw).ok_or_else(unsure)
    }
}

/// `status`: null (as `{}`) or an object; its code and message as read.
struct Status<'py> {
    py: Python<'py>,
}

type StatusValue<'de> = Option<(Option<Val<'de>>, Option<Val<'de>>)>;

impl<'de, 'py> DeserializeSeed<'de> for Status<'py> {
    type Value = StatusValue<'de>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de, 'py> Visitor<'de> for Status<'py> {
    type Value = StatusValue<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a status")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let (mut code, mut message) = (None, None);
        let py = self.py;
        members(&mut map, &["code", "message"], |i, map| {
            let value = Some(map.next_value_seed(ValSeed(py))?);
            if i == 0 {
                code = value;
            } else {
                message = value;
            }
            Ok(())
        })?;
        Ok(Some((code, message)))
    }
}

seed!(Attributes, "null or a list of attributes");
impl<'de, 's, 'r, 'py> Visitor<'de> for Attributes<'s, 'r, 'py> {
    type Value = PyObject;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        Self::what(f)
    }
    fn visit_unit<E: de::Error>(self) -> Result<PyObject, E> {
        Ok(self.run.new_dict())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<PyObject, A::Error> {
        let run = self.run;
        let dict = run.new_dict();
        while seq.next_element_seed(KeyValue { run: &mut *run, dict: &dict })?.is_some() {}
        Ok(dict)
    }
}

/// One `{"key": …, "value": AnyValue}` into the attributes dict; other items are skipped, as in Python.
struct KeyValue<'s, 'r, 'py, 'd> {
    run: &'s mut Run<'r, 'py>,
    dict: &'d PyObject,
}

impl<'de, 's, 'r, 'py, 'd> DeserializeSeed<'de> for KeyValue<'s, 'r, 'py, 'd> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de, 's, 'r, 'py, 'd> Visitor<'de> for KeyValue<'s, 'r, 'py, 'd> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an attribute")
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
        Skip.visit_seq(seq)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let run = self.run;
        let py = run.py;
        let mut key: Option<Val<'de>> = None;
        let mut value: Option<PyObject> = None;
        members(&mut map, &["key", "value"], |i, map| {
            if i == 0 {
                key = Some(map.next_value_seed(ValSeed(py))?);
            } else {
                value = Some(map.next_value_seed(AnyValue { run: &mut *run })?);
            }
            Ok(())
        })?;
        let key = match key {
            None => return Ok(()), // no "key": skipped
            Some(Val::Str(k)) => run.key(&k),
            Some(_) => return Err(unsure()),
        };
        let value = value.unwrap_or_else(|| py.None());
        match unsafe { ffi::PyDict_SetItem(self.dict.as_ptr(), key.as_ptr(), value.as_ptr()) } {
            0 => Ok(()),
            _ => {
                drop(PyErr::fetch(py));
                Err(unsure())
            }
        }
    }
}

seed!(AnyValue, "an AnyValue");
impl<'de, 's, 'r, 'py> Visitor<'de> for AnyValue<'s, 'r, 'py> {
    type Value = PyObject;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        Self::what(f)
    }
    // `_any_value(kv.get("value") or {})`: a falsy value is `{}` (None); a truthy non-object is Python's to judge.
    fn visit_unit<E: de::Error>(self) -> Result<PyObject, E> {
        Ok(self.run.py.None())
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<PyObject, E> {
        if v { Err(unsure()) } else { Ok(self.run.py.None()) }
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<PyObject, E> {
        if v != 0 { Err(unsure()) } else { Ok(self.run.py.None()) }
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<PyObject, E> {
        if v != 0 { Err(unsure()) } else { Ok(self.run.py.None()) }
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<PyObject, E> {
        if v != 0.0 { Err(unsure()) } else { Ok(self.run.py.None()) }
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<PyObject, E> {
        if !v.is_empty() { Err(unsure()) } else { Ok(self.run.py.None()) }
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<PyObject, A::Error> {
        if seq.next_element_seed(Skip)?.is_some() { Err(unsure()) } else { Ok(self.run.py.None()) }
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<PyObject, A::Error> {
        let run = self.run;
        let py = run.py;
        let mut found: Vec<Option<Val<'de>>> = vec![None, None, None, None, None, None, None];
        members(&mut map, &ANY_VALUE_KEYS, |i, map| {
            found[i] = Some(map.next_value_seed(ValSeed(py))?);
            Ok(())
        })?;
        run.any_value(found).ok_or_else(unsure)
    }
}

seed!(Events, "null or a list of events");
impl<'de, 's, 'r, 'py> Visitor<'de> for Events<'s, 'r, 'py> {
    type Value = Vec<(PyObject, Option<i64>, PyObject)>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        Self::what(f)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Vec::new())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let run = self.run;
        let mut events = Vec::new();
        while let Some(event) = seq.next_element_seed(Event { run: &mut *run })? {
            events.push(event);
        }
        Ok(events)
    }
}

seed!(Event, "an event");
impl<'de, 's, 'r, 'py> Visitor<'de> for Event<'s, 'r, 'py> {
    type Value = (PyObject, Option<i64>, PyObject);
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        Self::what(f)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let run = self.run;
        let py = run.py;
        let (mut name, mut time, mut attributes) = (None, None, None);
        members(&mut map, &["name", "timeUnixNano", "attributes"], |i, map| {
            match i {
                0 => name = Some(map.next_value_seed(ValSeed(py))?),
                1 => time = Some(map.next_value_seed(ValSeed(py))?),
                _ => attributes = Some(map.next_value_seed(Attributes { run: &mut *run })?),
            }
            Ok(())
        })?;
        // str(e.get("name") or ""), int(e.get("timeUnixNano") or start) (None: the span's start)
        let name = match &name {
            Some(v) if truthy(py, v).ok_or_else(unsure)? => str_py(py, v).ok_or_else(unsure)?,
            _ => run.dec.empty.clone_ref(py),
        };
        let time = match &time {
            Some(v) if truthy(py, v).ok_or_else(unsure)? => Some(int_i64(py, v).ok_or_else(unsure)?),
            _ => None,
        };
        Ok((name, time, attributes.unwrap_or_else(|| run.new_dict())))
    }
}

seed!(Links, "null or a list of links");
impl<'de, 's, 'r, 'py> Visitor<'de> for Links<'s, 'r, 'py> {
    type Value = Vec<PyObject>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        Self::what(f)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Vec::new())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let run = self.run;
        let mut links = Vec::new();
        while let Some(link) = seq.next_element_seed(Link { run: &mut *run })? {
            links.push(link);
        }
        Ok(links)
    }
}

seed!(Link, "a link");
impl<'de, 's, 'r, 'py> Visitor<'de> for Link<'s, 'r, 'py> {
    type Value = PyObject;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        Self::what(f)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<PyObject, A::Error> {
        let run = self.run;
        let py = run.py;
        let (mut trace_id, mut span_id) = (None, None);
        members(&mut map, &["traceId", "spanId"], |i, map| {
            let value = Some(map.next_value_seed(ValSeed(py))?);
            if i == 0 {
                trace_id = value;
            } else {
                span_id = value;
            }
            Ok(())
        })?;
        // _otlp_id(link.get("traceId"), 16) or "", the same for the span ID with 8
        let mut ids = Vec::with_capacity(2);
        for (raw, size) in [(trace_id, 16), (span_id, 8)] {
            let id = match raw {
                Some(Val::Str(s)) => run.otlp_id(&s, size).ok_or_else(unsure)?,
                _ => None,
            };
            ids.push(id.unwrap_or_else(|| run.dec.empty.clone_ref(py)));
        }
        build(py, &run.dec.link_class, &run.dec.link_slots, ids).ok_or_else(unsure)
    }
}
