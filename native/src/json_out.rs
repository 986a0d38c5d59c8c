//! JSON exactly as orjson writes it, for the lists the render writes natively (the spans: render_spans.rs; the
//! log lines: logs_json.rs).
//!
//! Compact; in strings `"`, `\` and control characters escaped (the short forms for \b \t \n \f \r, `\u00xx` for
//! the rest), everything else as its UTF-8. Whatever is not a plain str, int (64-bit), bool, None, or a str-keyed
//! dict of those is written by orjson itself (`dumps(value)`, the body's own writer and options), so its rules —
//! floats, subclasses, lone surrogates (an error), non-str keys — stay orjson's.
//!
//! The one string writer of the crate: the spans' and the lines' JSON both go through `write_text`.

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString};

/// The output: written straight into a `bytes` object (grown by `_PyBytes_Resize`, i.e. realloc, which moves no
/// pages of a big buffer), so the megabytes of a big list are neither copied at the end nor faulted in twice.
pub struct Buf {
    obj: *mut ffi::PyObject,
    /// the object's bytes (moves when it is resized)
    data: *mut u8,
    len: usize,
    cap: usize,
}

/// The bytes object of the last list a writer made, kept for the next call of the same writer: a big list's pages
/// are faulted in once and written over at every later call, instead of mapped, faulted in and unmapped each time
/// (at 10k spans / 50k lines the render's ~20 MB of fresh pages were a quarter of its time). Taken only when
/// nothing else holds it any more (the body it went into is gone); at most `spare_max()` bytes are kept.
pub struct Spare(Mutex<Option<(Py<PyAny>, usize)>>);

/// The most a spare may hold, in bytes: `CORRELATOR_JSON_SPARE_MB` (MiB; 0 keeps none), read once; 64 MiB without it
/// (a 100k-span list is ~40 MB).
fn spare_max() -> usize {
    static LIMIT: OnceLock<usize> = OnceLock::new();
    *LIMIT.get_or_init(|| {
        std::env::var("CORRELATOR_JSON_SPARE_MB").ok().and_then(|mb| mb.trim().parse::<usize>().ok()).unwrap_or(64) << 20
    })
}

impl Spare {
    pub const fn new() -> Self {
        Spare(Mutex::new(None))
    }

    /// The kept object and its room, when this code is the only holder (else it stays with its holders).
    fn take(&self, _py: Python<'_>) -> Option<(*mut ffi::PyObject, usize)> {
        let mut kept = self.0.lock().ok()?;
        let (obj, _) = kept.as_ref()?;
        if unsafe { ffi::Py_REFCNT(obj.as_ptr()) } != 1 {
            *kept = None; // still in a body somewhere: dropped here, a new one is made
            return None;
        }
        let (obj, cap) = kept.take()?;
        Some((obj.into_ptr(), cap))
    }

    fn keep(&self, py: Python<'_>, obj: *mut ffi::PyObject, cap: usize) {
        if cap > spare_max() {
            return;
        }
        if let Ok(mut kept) = self.0.lock() {
            *kept = Some((unsafe { Py::from_borrowed_ptr(py, obj) }, cap));
        }
    }
}

impl Buf {
    pub fn with_capacity(py: Python<'_>, cap: usize) -> PyResult<Self> {
        let cap = cap.max(16);
        let obj = unsafe { ffi::PyBytes_FromStringAndSize(std::ptr::null(), cap as ffi::Py_ssize_t) };
        if obj.is_null() {
            return Err(PyErr::fetch(py));
        }
        Ok(Buf { obj, data: unsafe { ffi::PyBytes_AsString(obj) as *mut u8 }, len: 0, cap })
    }

    /// A buffer in `spare`'s object when it can be had (its room as it was), else a new one of `cap`.
    pub fn reusing(py: Python<'_>, spare: &Spare, cap: usize) -> PyResult<Self> {
        match spare.take(py) {
            Some((obj, room)) => Ok(Buf { obj, data: unsafe { ffi::PyBytes_AsString(obj) as *mut u8 }, len: 0, cap: room }),
            None => Self::with_capacity(py, cap),
        }
    }

    /// `finish`, keeping the object (all its room) in `spare` for the next call: its length is set to what was
    /// written, without a realloc that would give the room's pages back.
    pub fn finish_keeping<'py>(mut self, py: Python<'py>, spare: &Spare) -> PyResult<Bound<'py, PyBytes>> {
        if self.cap > spare_max() {
            return self.finish(py);
        }
        let obj = std::mem::replace(&mut self.obj, std::ptr::null_mut());
        unsafe {
            // As `_PyBytes_Resize` leaves a bytes object: its size, the NUL after it, no hash cached. The allocation
            // is the room's (freed whole with the object).
            (*(obj as *mut ffi::PyVarObject)).ob_size = self.len as ffi::Py_ssize_t;
            *self.data.add(self.len) = 0;
            #[allow(deprecated)]
            {
                (*(obj as *mut ffi::PyBytesObject)).ob_shash = -1;
            }
        }
        spare.keep(py, obj, self.cap);
        Ok(unsafe { Bound::from_owned_ptr(py, obj).downcast_into_unchecked() })
    }

    #[inline]
    fn data(&self) -> *mut u8 {
        self.data
    }

    #[inline]
    pub fn reserve(&mut self, extra: usize) {
        if self.len + extra > self.cap {
            self.grow(self.len + extra);
        }
    }

    #[cold]
    fn grow(&mut self, needed: usize) {
        let cap = needed.max(self.cap + self.cap / 2);
        // Only this code holds the object (reference count 1): resizing it in place is allowed.
        if unsafe { ffi::_PyBytes_Resize(&mut self.obj, cap as ffi::Py_ssize_t) } != 0 {
            self.obj = std::ptr::null_mut(); // freed by the failed resize
            panic!("out of memory writing a JSON list of {cap} bytes");
        }
        self.data = unsafe { ffi::PyBytes_AsString(self.obj) as *mut u8 };
        self.cap = cap;
    }

    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    #[inline]
    pub fn push(&mut self, b: u8) {
        self.reserve(1);
        unsafe { *self.data().add(self.len) = b };
        self.len += 1;
    }

    #[inline]
    pub fn extend_from_slice(&mut self, bytes: &[u8]) {
        self.reserve(bytes.len());
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.data().add(self.len), bytes.len()) };
        self.len += bytes.len();
    }

    /// Appends a copy of what was written at `start..end`.
    pub fn extend_from_within(&mut self, start: usize, end: usize) {
        assert!(start <= end && end <= self.len);
        self.reserve(end - start);
        unsafe { std::ptr::copy_nonoverlapping(self.data().add(start), self.data().add(self.len), end - start) };
        self.len += end - start;
    }

    /// What was written from `start` on.
    pub fn written(&self, start: usize) -> &[u8] {
        assert!(start <= self.len);
        unsafe { std::slice::from_raw_parts(self.data().add(start), self.len - start) }
    }

    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// The bytes written, as a `bytes` object of exactly that length.
    pub fn finish<'py>(mut self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let mut obj = std::mem::replace(&mut self.obj, std::ptr::null_mut());
        if unsafe { ffi::_PyBytes_Resize(&mut obj, self.len as ffi::Py_ssize_t) } != 0 {
            return Err(PyErr::fetch(py));
        }
        Ok(unsafe { Bound::from_owned_ptr(py, obj).downcast_into_unchecked() })
    }
}

impl Drop for Buf {
    fn drop(&mut self) {
        if !self.obj.is_null() {
            unsafe { ffi::Py_DECREF(self.obj) }; // an error on the way: the GIL is held (only pyfunctions make one)
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
const ONES: u64 = 0x0101_0101_0101_0101;
#[cfg(not(target_arch = "x86_64"))]
const HIGHS: u64 = 0x8080_8080_8080_8080;

#[cfg(not(target_arch = "x86_64"))]
/// Whether any of eight bytes is below 0x20, `"` or `\` (a byte is flagged exactly when its high bit is set in
/// `x - n` and clear in `x`, n ≤ 0x80; a zero byte of `x ^ c` is a byte equal to `c`).
fn flagged(x: u64) -> bool {
    let control = x.wrapping_sub(ONES * 0x20) & !x;
    let quote = x ^ (ONES * u64::from(b'"'));
    let backslash = x ^ (ONES * u64::from(b'\\'));
    let quote = quote.wrapping_sub(ONES) & !quote;
    let backslash = backslash.wrapping_sub(ONES) & !backslash;
    (control | quote | backslash) & HIGHS != 0
}

fn escaped(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

#[cfg(not(target_arch = "x86_64"))]
/// The first byte at or after `from` that JSON escapes, or `text.len()`: clean runs skipped eight bytes at a time.
fn next_escape(text: &[u8], mut from: usize) -> usize {
    while from + 8 <= text.len() {
        let x = u64::from_le_bytes(text[from..from + 8].try_into().expect("8 bytes"));
        if flagged(x) {
            break;
        }
        from += 8;
    }
    while from < text.len() && !escaped(text[from]) {
        from += 1;
    }
    from
}

/// Copies `text[from..]` up to the first byte JSON escapes into `out`; returns where that byte stands (or
/// `text.len()`). Sixteen bytes at a time with SSE2 (every x86-64 has it): each clean block is checked and stored
/// in one go, with no scan before a separate copy (a call to `memcpy` per run, most runs short); the rest as before.
#[cfg(target_arch = "x86_64")]
fn copy_clean(out: &mut Buf, text: &[u8], mut from: usize) -> usize {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_min_epu8, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8,
        _mm_storeu_si128,
    };
    out.reserve(text.len() - from);
    // SAFETY: SSE2 is part of x86-64; loads read text[from..from + 16] (in bounds), stores write out[len..len + 16]
    // (reserved above: at most the rest of the text is copied).
    unsafe {
        let quote = _mm_set1_epi8(b'"' as i8);
        let backslash = _mm_set1_epi8(b'\\' as i8);
        let control = _mm_set1_epi8(0x1f);
        while from + 16 <= text.len() {
            let x = _mm_loadu_si128(text.as_ptr().add(from) as *const __m128i);
            // a byte ≤ 0x1f (unsigned) is its own minimum with 0x1f
            let hit = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(x, quote), _mm_cmpeq_epi8(x, backslash)),
                                   _mm_cmpeq_epi8(_mm_min_epu8(x, control), x));
            let mask = _mm_movemask_epi8(hit) as u32;
            if mask != 0 {
                let clean = mask.trailing_zeros() as usize;
                std::ptr::copy_nonoverlapping(text.as_ptr().add(from), out.data().add(out.len), clean);
                out.len += clean;
                return from + clean;
            }
            _mm_storeu_si128(out.data().add(out.len) as *mut __m128i, x);
            out.len += 16;
            from += 16;
        }
        // The last 0-15 bytes: checked and copied together (a call to `memcpy` costs more than a short string).
        let (data, mut len) = (out.data(), out.len);
        while from < text.len() && !escaped(text[from]) {
            *data.add(len) = text[from];
            len += 1;
            from += 1;
        }
        out.len = len;
    }
    from
}

#[cfg(not(target_arch = "x86_64"))]
fn copy_clean(out: &mut Buf, text: &[u8], from: usize) -> usize {
    let at = next_escape(text, from);
    out.extend_from_slice(&text[from..at]);
    at
}

/// The JSON text of a UTF-8 string, as orjson escapes it.
pub fn write_text(out: &mut Buf, text: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.reserve(text.len() + 2);
    out.push(b'"');
    let mut start = 0;
    loop {
        let at = copy_clean(out, text, start);
        if at == text.len() {
            break;
        }
        match text[at] {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0x08 => out.extend_from_slice(b"\\b"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            0x0c => out.extend_from_slice(b"\\f"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b => out.extend_from_slice(&[b'\\', b'u', b'0', b'0', HEX[(b >> 4) as usize], HEX[(b & 15) as usize]]),
        }
        start = at + 1;
    }
    out.push(b'"');
}

/// The UTF-8 of an exact str (its own bytes when ASCII), or None: a subclass, or lone surrogates (orjson refuses
/// those: `dumps` raises its own error then).
pub fn utf8<'a>(value: &'a Bound<'_, PyAny>) -> Option<&'a [u8]> {
    unsafe {
        let p = value.as_ptr();
        if ffi::PyUnicode_CheckExact(p) == 0 {
            return None;
        }
        if ffi::PyUnicode_IS_ASCII(p) != 0 {
            let len = ffi::PyUnicode_GET_LENGTH(p) as usize;
            return Some(std::slice::from_raw_parts(ffi::PyUnicode_1BYTE_DATA(p) as *const u8, len));
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

/// A 64-bit exact int, or None.
pub fn int64(value: &Bound<'_, PyAny>) -> Option<i64> {
    if unsafe { ffi::PyLong_CheckExact(value.as_ptr()) } == 0 {
        return None;
    }
    value.extract::<i64>().ok()
}

pub fn write_int(out: &mut Buf, n: i64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut rest = n.unsigned_abs();
    loop {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    if n < 0 {
        out.push(b'-');
    }
    out.extend_from_slice(&digits[at..]);
}

/// `dict(mapping)`.
pub fn dict_copy<'py>(mapping: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    unsafe {
        let copied = if ffi::PyDict_CheckExact(mapping.as_ptr()) != 0 {
            ffi::PyDict_Copy(mapping.as_ptr())
        } else {
            let new = ffi::PyDict_New();
            if !new.is_null() && ffi::PyDict_Merge(new, mapping.as_ptr(), 1) != 0 {
                ffi::Py_DECREF(new);
                std::ptr::null_mut()
            } else {
                new
            }
        };
        Bound::from_owned_ptr_or_err(mapping.py(), copied)
    }
}

/// A field of a slotted dataclass, read straight from its slot when it can be (what `getattr` ends up reading,
/// without the lookups around it). Only for objects of the exact class the offset was read from, whose attribute
/// lookup is the generic one; anything else, or an unset slot, → `getattr`.
pub struct Field<'py> {
    pub name: Bound<'py, PyString>,
    slot: Cell<Option<(*mut ffi::PyTypeObject, ffi::Py_ssize_t)>>,
    probed: Cell<bool>,
}

impl<'py> Field<'py> {
    pub fn new(py: Python<'py>, name: &str) -> Self {
        Field { name: PyString::intern(py, name), slot: Cell::new(None), probed: Cell::new(false) }
    }

    pub fn get(&self, obj: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let class = unsafe { ffi::Py_TYPE(obj.as_ptr()) };
        if !self.probed.get() {
            self.probed.set(true);
            self.slot.set(self.member_offset(obj.py(), class));
        }
        if let Some((known, offset)) = self.slot.get() {
            if known == class {
                let value = unsafe { *((obj.as_ptr() as *mut u8).offset(offset) as *mut *mut ffi::PyObject) };
                if !value.is_null() {
                    return Ok(unsafe { Bound::from_borrowed_ptr(obj.py(), value) });
                }
            }
        }
        obj.getattr(&self.name)
    }

    /// The slot offset of this field in `class`, when `getattr` would read exactly that slot.
    fn member_offset(&self, py: Python<'py>, class: *mut ffi::PyTypeObject) -> Option<(*mut ffi::PyTypeObject, ffi::Py_ssize_t)> {
        unsafe {
            if (*class).tp_getattro.map(|f| f as *const () as usize) != Some(ffi::PyObject_GenericGetAttr as *const () as usize) {
                return None;
            }
            let descr = ffi::PyObject_GetAttr(class as *mut ffi::PyObject, self.name.as_ptr());
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
            Some((class, (*member).offset))
        }
    }
}

/// The output, and orjson for what it does not write itself.
pub struct Writer<'a, 'py> {
    pub out: Buf,
    /// `orjson.dumps(value, option=OPT_NON_STR_KEYS)`: the body's own writer
    dumps: &'a Bound<'py, PyAny>,
    /// Where a mapping's JSON already sits in `out`, by the mapping's address: lines of one stream share their
    /// labels (and often their metadata) object. Valid for one call: every mapping is kept alive by its item.
    written: HashMap<usize, (usize, usize)>,
    /// the last mapping written in each slot (a line's labels, its metadata): most lines repeat their stream's
    last: [Option<(usize, usize, usize)>; 2],
}

impl<'a, 'py> Writer<'a, 'py> {
    /// A writer into `spare`'s object when it is free (`Buf::reusing`), else into a new one of `capacity`.
    pub fn reusing(spare: &Spare, capacity: usize, dumps: &'a Bound<'py, PyAny>) -> PyResult<Self> {
        Ok(Writer { out: Buf::reusing(dumps.py(), spare, capacity)?, dumps, written: HashMap::new(), last: [None, None] })
    }

    pub fn by_orjson(&mut self, value: &Bound<'py, PyAny>) -> PyResult<()> {
        let written = self.dumps.call1((value,))?;
        let bytes = written.downcast::<PyBytes>()?;
        self.out.extend_from_slice(bytes.as_bytes());
        Ok(())
    }

    /// A str, int, bool or None natively; anything else (floats, containers, subclasses) by orjson.
    pub fn value(&mut self, value: &Bound<'py, PyAny>) -> PyResult<()> {
        let p = value.as_ptr();
        unsafe {
            if p == ffi::Py_None() {
                self.out.extend_from_slice(b"null");
            } else if let Some(text) = utf8(value) {
                write_text(&mut self.out, text);
            } else if p == ffi::Py_True() {
                self.out.extend_from_slice(b"true");
            } else if p == ffi::Py_False() {
                self.out.extend_from_slice(b"false");
            } else if let Some(n) = int64(value) {
                write_int(&mut self.out, n);
            } else {
                self.by_orjson(value)?;
            }
        }
        Ok(())
    }

    /// `dict(mapping)` as orjson writes it: an exact dict with exact-str keys natively (its values by `value`),
    /// anything else by orjson (OPT_NON_STR_KEYS' rules for other keys). Each mapping object is written once
    /// per call and copied after that.
    pub fn mapping(&mut self, slot: usize, mapping: &Bound<'py, PyAny>) -> PyResult<()> {
        let address = mapping.as_ptr() as usize;
        let known = match self.last[slot] {
            Some((at, start, end)) if at == address => Some((start, end)),
            _ => self.written.get(&address).copied(),
        };
        if let Some((start, end)) = known {
            self.out.extend_from_within(start, end);
            self.last[slot] = Some((address, start, end));
            return Ok(());
        }
        let start = self.out.len();
        if unsafe { ffi::PyDict_CheckExact(mapping.as_ptr()) } != 0 {
            self.dict(unsafe { mapping.downcast_unchecked::<PyDict>() })?;
        } else {
            self.by_orjson(&dict_copy(mapping)?)?;
        }
        let end = self.out.len();
        self.written.insert(address, (start, end));
        self.last[slot] = Some((address, start, end));
        Ok(())
    }

    /// A value whose exact lists and str-keyed dicts are written here one level deep (a span's attributes, its
    /// ID lists): their items by `value`; anything else as `value` writes it.
    pub fn nested(&mut self, value: &Bound<'py, PyAny>) -> PyResult<()> {
        let p = value.as_ptr();
        unsafe {
            if ffi::PyList_CheckExact(p) != 0 {
                self.list(value.downcast_unchecked::<PyList>())
            } else if ffi::PyDict_CheckExact(p) != 0 {
                self.dict(value.downcast_unchecked::<PyDict>())
            } else {
                self.value(value)
            }
        }
    }

    /// A list of plain values (IDs); containers inside it are orjson's.
    fn list(&mut self, list: &Bound<'py, PyList>) -> PyResult<()> {
        self.out.push(b'[');
        for (i, item) in list.iter().enumerate() {
            if i > 0 {
                self.out.push(b',');
            }
            self.value(&item)?;
        }
        self.out.push(b']');
        Ok(())
    }

    /// A dict with str keys; any other key: the whole dict is orjson's (OPT_NON_STR_KEYS' rules).
    fn dict(&mut self, dict: &Bound<'py, PyDict>) -> PyResult<()> {
        let mark = self.out.len();
        self.out.push(b'{');
        for (i, (key, value)) in dict.iter().enumerate() {
            let key_text = match utf8(&key) {
                Some(text) => text,
                None => {
                    self.out.truncate(mark);
                    return self.by_orjson(dict.as_any());
                }
            };
            if i > 0 {
                self.out.push(b',');
            }
            write_text(&mut self.out, key_text);
            self.out.push(b':');
            self.value(&value)?;
        }
        self.out.push(b'}');
        Ok(())
    }

    /// `{"name":` for the first key of an object, `,"name":` for the others.
    pub fn key(&mut self, first: bool, name: &[u8]) {
        self.out.extend_from_slice(if first { b"{\"" } else { b",\"" });
        self.out.extend_from_slice(name);
        self.out.extend_from_slice(b"\":");
    }
}
