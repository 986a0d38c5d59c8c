//! The response's `spans` list and what each span calls, natively (issue 14, P2: the render of a big trace).
//!
//! The Python code is the reference: `correlator/render.py` `_spans_python` and `correlator/analysis/identity.py`
//! (`target`, `normalise_statement`, `normalise_path`). This module does exactly what they do where it can be
//! sure and hands everything else back:
//!
//! - statement and path shapes only for ASCII text (Python's `\d`, `\w` and `\s` are Unicode classes): other
//!   text → `None`, the Python regexes;
//! - a span's target only from a plain `dict` of attributes whose telling values are plain `str`s, and never
//!   from a URL (`urlsplit`'s rules are Python's): otherwise `NotImplemented`, Python's `target`;
//! - the span list: each span's events, the milliseconds of an offset that is negative, a tie or beyond 2⁵², and
//!   the target of a span the native `target` hands back are asked of the Python callables given; anything
//!   unexpected (a missing ID, a time that is not a 64-bit int) → `None`, and Python renders the whole list.
//!
//! tests/test_render_spans_native.py compares both paths on random and real statements, paths, attribute sets
//! and whole bodies.

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::GILOnceCell;
use pyo3::types::{PyBytes, PyDict, PyList, PyString};
use pyo3::wrap_pyfunction;

use crate::json_out::{dict_copy, int64, write_int, Buf, Field, Spare, Writer};

#[path = "tree.rs"]
mod tree;

// ---------------------------------------------------------------------------------------------------------
// Statement and path shapes: the regexes of identity.py, one byte scan each, for ASCII text.

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Python's `str.isspace` / `re`'s `\s` on an ASCII character (\x1c–\x1f are spaces to Python).
fn is_space(b: u8) -> bool {
    matches!(b, 9..=13 | 28..=32)
}

fn skip_spaces(s: &[u8], mut p: usize) -> usize {
    while p < s.len() && is_space(s[p]) {
        p += 1;
    }
    p
}

/// `'(?:[^'\\]|\\.|'')*'` at `i` (a `'`): where the match ends. The engine's backtracking gives the longest
/// match, and the star can only stop usefully at a `'`: the last `'` the deterministic walk reaches.
fn single_quoted_end(s: &[u8], i: usize) -> Option<usize> {
    let (mut p, mut last) = (i + 1, None);
    while p < s.len() {
        match s[p] {
            b'\'' => {
                last = Some(p + 1);
                if p + 1 < s.len() && s[p + 1] == b'\'' {
                    p += 2;
                } else {
                    break;
                }
            }
            // `\\.`: `.` is anything but a newline.
            b'\\' => {
                if p + 1 < s.len() && s[p + 1] != b'\n' {
                    p += 2;
                } else {
                    break;
                }
            }
            _ => p += 1,
        }
    }
    last
}

/// `"(?:[^"\\]|\\.)*"` at `i` (a `"`): the first `"` the walk reaches closes it.
fn double_quoted_end(s: &[u8], i: usize) -> Option<usize> {
    let mut p = i + 1;
    while p < s.len() {
        match s[p] {
            b'"' => return Some(p + 1),
            b'\\' => {
                if p + 1 < s.len() && s[p + 1] != b'\n' {
                    p += 2;
                } else {
                    return None;
                }
            }
            _ => p += 1,
        }
    }
    None
}

/// `_STRING.sub("?", s)`.
fn strings(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        let end = match s[i] {
            b'\'' => single_quoted_end(s, i),
            b'"' => double_quoted_end(s, i),
            _ => None,
        };
        match end {
            Some(end) => {
                out.push(b'?');
                i = end;
            }
            None => {
                out.push(s[i]);
                i += 1;
            }
        }
    }
    out
}

fn digits_end(s: &[u8], mut p: usize) -> usize {
    while p < s.len() && s[p].is_ascii_digit() {
        p += 1;
    }
    p
}

/// `[eE][-+]?\d+` at `p`: where it ends.
fn exponent_end(s: &[u8], p: usize) -> Option<usize> {
    if p < s.len() && (s[p] == b'e' || s[p] == b'E') {
        let mut q = p + 1;
        if q < s.len() && (s[q] == b'+' || s[q] == b'-') {
            q += 1;
        }
        let end = digits_end(s, q);
        if end > q {
            return Some(end);
        }
    }
    None
}

/// `(?:0x[0-9a-fA-F]+|-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)(?!\w)` at `i` (the lookbehind already checked):
/// where the match ends, trying the optional parts as the engine backtracks (greedy first).
fn number_end(s: &[u8], i: usize) -> Option<usize> {
    let n = s.len();
    let not_word = |p: usize| p >= n || !is_word(s[p]);
    if s[i] == b'0' && i + 1 < n && s[i + 1] == b'x' {
        let mut p = i + 2;
        while p < n && s[p].is_ascii_hexdigit() {
            p += 1;
        }
        if p > i + 2 && not_word(p) {
            return Some(p);
        }
        return None; // the decimal branch stops at the `x`, a word character
    }
    let start = if s[i] == b'-' { i + 1 } else { i };
    let whole = digits_end(s, start);
    if whole == start {
        return None;
    }
    if whole + 1 < n && s[whole] == b'.' && s[whole + 1].is_ascii_digit() {
        let fraction = digits_end(s, whole + 1);
        if let Some(end) = exponent_end(s, fraction) {
            if not_word(end) {
                return Some(end);
            }
        }
        if not_word(fraction) {
            return Some(fraction);
        }
        return Some(whole); // without the fraction: a `.` follows, not a word character
    }
    if let Some(end) = exponent_end(s, whole) {
        if not_word(end) {
            return Some(end);
        }
    }
    if not_word(whole) {
        Some(whole)
    } else {
        None
    }
}

/// `_NUMBER.sub("?", s)`: a number not glued to a word (`(?<![\w$])`, on the pass's own input).
fn numbers(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let (mut i, mut copied) = (0, 0); // the text before `copied` is in `out`; the run after it is copied in one go
    while i < s.len() {
        let c = s[i];
        if (c.is_ascii_digit() || c == b'-') && (i == 0 || !(is_word(s[i - 1]) || s[i - 1] == b'$')) {
            if let Some(end) = number_end(s, i) {
                out.extend_from_slice(&s[copied..i]);
                out.push(b'?');
                i = end;
                copied = end;
                continue;
            }
        }
        i += 1;
    }
    out.extend_from_slice(&s[copied..]);
    out
}

/// `\(\s*\?(?:\s*,\s*\?)*\s*\)` at `i` (a `(`).
fn in_list_end(s: &[u8], i: usize) -> Option<usize> {
    let mut p = skip_spaces(s, i + 1);
    if p >= s.len() || s[p] != b'?' {
        return None;
    }
    p += 1;
    loop {
        let comma = skip_spaces(s, p);
        if comma < s.len() && s[comma] == b',' {
            let mark = skip_spaces(s, comma + 1);
            if mark < s.len() && s[mark] == b'?' {
                p = mark + 1;
                continue;
            }
        }
        break;
    }
    let close = skip_spaces(s, p);
    if close < s.len() && s[close] == b')' {
        Some(close + 1)
    } else {
        None
    }
}

/// `\(\?\)(?:\s*,\s*\(\?\))+` at `i`.
fn values_rows_end(s: &[u8], i: usize) -> Option<usize> {
    if !s[i..].starts_with(b"(?)") {
        return None;
    }
    let (mut p, mut rows) = (i + 3, 0);
    loop {
        let comma = skip_spaces(s, p);
        if comma < s.len() && s[comma] == b',' {
            let row = skip_spaces(s, comma + 1);
            if s[row..].starts_with(b"(?)") {
                p = row + 3;
                rows += 1;
                continue;
            }
        }
        break;
    }
    if rows > 0 {
        Some(p)
    } else {
        None
    }
}

/// `pattern.sub("(?)", s)` for a pattern starting with `(`, given where its match at each `(` ends.
fn parens(s: &[u8], end_at: fn(&[u8], usize) -> Option<usize>) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'(' {
            if let Some(end) = end_at(s, i) {
                out.extend_from_slice(b"(?)");
                i = end;
                continue;
            }
        }
        out.push(s[i]);
        i += 1;
    }
    out
}

/// `" ".join(s.split())`.
fn squeeze(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    for word in s.split(|&b| is_space(b)).filter(|w| !w.is_empty()) {
        if !out.is_empty() {
            out.push(b' ');
        }
        out.extend_from_slice(word);
    }
    out
}

/// `identity.normalise_statement` of ASCII text (each pass only where its first character stands).
pub fn statement_shape(s: &[u8]) -> Vec<u8> {
    let shape = if s.iter().any(|&b| b == b'\'' || b == b'"') { numbers(&strings(s)) } else { numbers(s) };
    let shape = if shape.contains(&b'(') { parens(&parens(&shape, in_list_end), values_rows_end) } else { shape };
    let squeezed = shape.first().map_or(true, |&b| !is_space(b))
        && shape.last().map_or(true, |&b| !is_space(b))
        && !shape.windows(2).any(|w| is_space(w[1]) && (w[1] != b' ' || is_space(w[0])));
    if squeezed {
        shape // single spaces between words already: `" ".join(shape.split())` is the text itself
    } else {
        squeeze(&shape)
    }
}

/// `(?:\d+|[0-9a-fA-F]{8}-[0-9a-fA-F-]{27}|[0-9a-fA-F]{16,})(?=/|$|\?|\s)` at `i` (after a `/`), in a text
/// without `?`: `$` is the end or a final newline, a space anyway.
fn id_segment_end(s: &[u8], i: usize) -> Option<usize> {
    let n = s.len();
    let ahead = |p: usize| p >= n || s[p] == b'/' || is_space(s[p]);
    let digits = digits_end(s, i);
    if digits > i && ahead(digits) {
        return Some(digits);
    }
    if i + 36 <= n
        && s[i..i + 8].iter().all(u8::is_ascii_hexdigit)
        && s[i + 8] == b'-'
        && s[i + 9..i + 36].iter().all(|b| b.is_ascii_hexdigit() || *b == b'-')
        && ahead(i + 36)
    {
        return Some(i + 36);
    }
    let mut hex = i;
    while hex < n && s[hex].is_ascii_hexdigit() {
        hex += 1;
    }
    if hex - i >= 16 && ahead(hex) {
        return Some(hex);
    }
    None
}

/// `identity.normalise_path` of ASCII text: None when it is the text itself (no `/`).
pub fn path_shape(text: &[u8]) -> Option<Vec<u8>> {
    if !text.contains(&b'/') {
        return None;
    }
    let s = match text.iter().position(|&b| b == b'?') {
        Some(q) => &text[..q],
        None => text,
    };
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if i > 0 && s[i - 1] == b'/' {
            if let Some(end) = id_segment_end(s, i) {
                out.extend_from_slice(b"{id}");
                i = end;
                continue;
            }
        }
        out.push(s[i]);
        i += 1;
    }
    Some(out)
}

// ---------------------------------------------------------------------------------------------------------
// Python strings, read and made without copies where CPython allows.

/// The bytes of an exact `str` that is ASCII (compact ASCII: its data is those bytes), else None.
fn ascii_bytes<'a>(text: &'a Bound<'_, PyAny>) -> Option<&'a [u8]> {
    unsafe {
        let p = text.as_ptr();
        if ffi::PyUnicode_CheckExact(p) == 0 || ffi::PyUnicode_IS_ASCII(p) == 0 {
            return None;
        }
        let len = ffi::PyUnicode_GET_LENGTH(p) as usize;
        Some(std::slice::from_raw_parts(ffi::PyUnicode_1BYTE_DATA(p) as *const u8, len))
    }
}

/// A new `str` of ASCII bytes.
fn ascii_str<'py>(py: Python<'py>, bytes: &[u8]) -> PyResult<Bound<'py, PyAny>> {
    debug_assert!(bytes.is_ascii());
    unsafe {
        let new = ffi::PyUnicode_New(bytes.len() as ffi::Py_ssize_t, 127);
        if !new.is_null() {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), ffi::PyUnicode_1BYTE_DATA(new), bytes.len());
        }
        Bound::from_owned_ptr_or_err(py, new)
    }
}

/// `normalise_statement` for ASCII text; None: Python's regexes must decide.
#[pyfunction]
fn normalise_statement<'py>(py: Python<'py>, statement: &Bound<'py, PyAny>) -> PyResult<Option<Bound<'py, PyAny>>> {
    match ascii_bytes(statement) {
        Some(bytes) => Ok(Some(ascii_str(py, &statement_shape(bytes))?)),
        None => Ok(None),
    }
}

/// `normalise_path` for ASCII text; None: Python's regex must decide.
#[pyfunction]
fn normalise_path<'py>(py: Python<'py>, text: &Bound<'py, PyAny>) -> PyResult<Option<Bound<'py, PyAny>>> {
    match ascii_bytes(text) {
        Some(bytes) => match path_shape(bytes) {
            Some(shape) => Ok(Some(ascii_str(py, &shape)?)),
            None => Ok(Some(text.clone())),
        },
        None => Ok(None),
    }
}

// ---------------------------------------------------------------------------------------------------------
// A span's target (identity.target).

/// The attribute names `target` reads, interned once.
struct Keys {
    /// identity._WHAT_ORDER: rpc.method, the statement keys, the destinations, routes, paths, URLs.
    what: Vec<Py<PyString>>,
    rpc_service: Py<PyString>,
    peer_service: Py<PyString>,
    peers: Vec<Py<PyString>>,
}

const WHAT_ORDER: [&str; 11] = [
    "rpc.method",
    "db.query.text",
    "db.statement",
    "messaging.destination.name",
    "messaging.destination",
    "http.route",
    "url.template",
    "url.path",
    "http.target",
    "url.full",
    "http.url",
];

static KEYS: GILOnceCell<Keys> = GILOnceCell::new();

fn keys(py: Python<'_>) -> &Keys {
    KEYS.get_or_init(py, || {
        let intern = |name: &str| PyString::intern(py, name).unbind();
        Keys {
            what: WHAT_ORDER.iter().map(|name| intern(name)).collect(),
            rpc_service: intern("rpc.service"),
            peer_service: intern("peer.service"),
            peers: vec![intern("server.address"), intern("net.peer.name")],
        }
    })
}

/// What `isinstance(value, str) and value` finds in one attribute.
enum Text<'py> {
    /// absent, not a str, or empty: Python moves on
    Nothing,
    /// a non-empty exact str
    Value(Bound<'py, PyAny>),
    /// a str subclass: its formatting and regexes are Python's
    Unsure,
}

fn text<'py>(attrs: &Bound<'py, PyDict>, key: &Py<PyString>) -> PyResult<Text<'py>> {
    let value = match attrs.get_item(key.bind(attrs.py()))? {
        Some(value) => value,
        None => return Ok(Text::Nothing),
    };
    unsafe {
        let p = value.as_ptr();
        if ffi::PyUnicode_Check(p) == 0 {
            Ok(Text::Nothing)
        } else if ffi::PyUnicode_CheckExact(p) == 0 {
            Ok(Text::Unsure)
        } else if ffi::PyUnicode_GET_LENGTH(p) == 0 {
            Ok(Text::Nothing)
        } else {
            Ok(Text::Value(value))
        }
    }
}

fn concat<'py>(a: &Bound<'py, PyAny>, sep: &str, b: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    let py = a.py();
    unsafe {
        let left = Bound::from_owned_ptr_or_err(py, ffi::PyUnicode_Concat(a.as_ptr(), PyString::new(py, sep).as_ptr()))?;
        Bound::from_owned_ptr_or_err(py, ffi::PyUnicode_Concat(left.as_ptr(), b.as_ptr()))
    }
}

/// `identity.target` of a span with these attributes and kind: Some(target or None), or None when Python must.
fn target_of<'py>(attrs: &Bound<'py, PyAny>, kind: &Bound<'py, PyAny>) -> PyResult<Option<Option<Bound<'py, PyAny>>>> {
    let py = attrs.py();
    if unsafe { ffi::PyDict_CheckExact(attrs.as_ptr()) } == 0 {
        return Ok(None);
    }
    let attrs: &Bound<'py, PyDict> = unsafe { attrs.downcast_unchecked() };
    if attrs.is_empty() {
        return Ok(Some(None));
    }
    let keys = keys(py);
    let mut what: Option<Bound<'py, PyAny>> = None;
    for (rank, key) in keys.what.iter().enumerate() {
        let value = match text(attrs, key)? {
            Text::Nothing => continue,
            Text::Unsure => return Ok(None),
            Text::Value(value) => value,
        };
        what = Some(match WHAT_ORDER[rank] {
            "rpc.method" => match text(attrs, &keys.rpc_service)? {
                Text::Nothing => value,
                Text::Unsure => return Ok(None),
                Text::Value(service) => concat(&service, "/", &value)?,
            },
            "db.query.text" | "db.statement" => match ascii_bytes(&value) {
                Some(bytes) => ascii_str(py, &statement_shape(bytes))?,
                None => return Ok(None),
            },
            "url.path" | "http.target" => match ascii_bytes(&value) {
                Some(bytes) => match path_shape(bytes) {
                    Some(shape) => ascii_str(py, &shape)?,
                    None => value,
                },
                None => return Ok(None),
            },
            "url.full" | "http.url" => return Ok(None), // urlsplit's rules are Python's
            _ => value,                                  // a route or a destination: already a template
        });
        break;
    }
    let mut peer = match text(attrs, &keys.peer_service)? {
        Text::Nothing => None,
        Text::Unsure => return Ok(None),
        Text::Value(peer) => Some(peer),
    };
    if peer.is_none() && what.is_none() {
        // `span.kind in ("client", "producer")`: only a plain str is compared here.
        let client = match kind.downcast_exact::<PyString>() {
            Ok(kind) => matches!(kind.to_str(), Ok("client") | Ok("producer")),
            Err(_) => return Ok(None),
        };
        if client {
            for key in &keys.peers {
                match text(attrs, key)? {
                    Text::Nothing => continue,
                    Text::Unsure => return Ok(None),
                    Text::Value(value) => {
                        peer = Some(value);
                        break;
                    }
                }
            }
        }
    }
    Ok(Some(match (peer, what) {
        (Some(peer), Some(what)) if unsafe { ffi::PyUnicode_GET_LENGTH(what.as_ptr()) } > 0 => Some(concat(&peer, " ", &what)?),
        (Some(peer), _) => Some(peer),
        (None, what) => what,
    }))
}

/// `identity.target(span)` from its attributes and kind, or `NotImplemented` when Python's must decide.
#[pyfunction]
fn span_target<'py>(py: Python<'py>, attributes: &Bound<'py, PyAny>, kind: &Bound<'py, PyAny>) -> PyResult<PyObject> {
    Ok(match target_of(attributes, kind)? {
        Some(Some(found)) => found.unbind(),
        Some(None) => py.None(),
        None => py.NotImplemented(),
    })
}

// ---------------------------------------------------------------------------------------------------------
// The span list (render._spans): as dicts (`render_spans`), or as the JSON orjson would write for them
// (`render_spans_json`, the body's `spans` as an `orjson.Fragment` when the body is only written out).

const FAST_MS_BELOW: i64 = 1 << 52;

/// `render._ms(ns)`: from the integers (the value is `thousandths / 1000`) except at ties and outside
/// [0, 2⁵²), where Python's `_ms` gives the float.
enum Ms<'py> {
    Thousandths(i64),
    Float(Bound<'py, PyAny>),
}

fn ms<'py>(ns: i64, slow: &Bound<'py, PyAny>) -> PyResult<Ms<'py>> {
    if (0..FAST_MS_BELOW).contains(&ns) && ns % 1000 != 500 {
        return Ok(Ms::Thousandths(ns / 1000 + i64::from(ns % 1000 > 500)));
    }
    Ok(Ms::Float(slow.call1((ns,))?))
}

impl<'py> Ms<'py> {
    fn into_float(self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        match self {
            // Exact: an integer below 2⁵² and 1000 as doubles, one correctly rounded division (as Python's int / int).
            Ms::Thousandths(k) => unsafe { Bound::from_owned_ptr_or_err(py, ffi::PyFloat_FromDouble(k as f64 / 1000.0)) },
            Ms::Float(value) => Ok(value),
        }
    }
}

/// `mapping.get(sid) or empty`.
fn ids_or<'py>(mapping: &Bound<'py, PyDict>, sid: &Bound<'py, PyAny>, empty: &Bound<'py, PyList>) -> PyResult<Bound<'py, PyAny>> {
    match mapping.get_item(sid)? {
        Some(ids) if ids.is_truthy()? => Ok(ids),
        _ => Ok(empty.clone().into_any()),
    }
}

/// What `render_spans` and `render_spans_json` read once per call.
struct Inputs<'a, 'py> {
    by_id: &'a Bound<'py, PyDict>,
    self_ns: &'a Bound<'py, PyDict>,
    depth: &'a Bound<'py, PyDict>,
    targets: &'a Bound<'py, PyDict>,
    logs: &'a Bound<'py, PyDict>,
    exemplars: &'a Bound<'py, PyDict>,
    inferred: &'a Bound<'py, PyDict>,
    origin: i64,
    no_ids: &'a Bound<'py, PyList>,
    ms_slow: &'a Bound<'py, PyAny>,
    events_of: &'a Bound<'py, PyAny>,
    target_slow: &'a Bound<'py, PyAny>,
    names: Names<'py>,
}

/// The Span fields read, per call.
struct Names<'py> {
    span_id: Field<'py>,
    parent: Field<'py>,
    service: Field<'py>,
    operation: Field<'py>,
    start: Field<'py>,
    end: Field<'py>,
    kind: Field<'py>,
    status: Field<'py>,
    message: Field<'py>,
    attributes: Field<'py>,
    events: Field<'py>,
}

impl<'py> Names<'py> {
    fn new(py: Python<'py>) -> Self {
        let field = |name: &str| Field::new(py, name);
        Names {
            span_id: field("span_id"), parent: field("parent_span_id"), service: field("service"),
            operation: field("operation"), start: field("start_ns"), end: field("end_ns"), kind: field("kind"),
            status: field("status"), message: field("status_message"), attributes: field("attributes"),
            events: field("events"),
        }
    }
}

/// One span's response fields, in the body's order; None when Python must render the whole list.
struct Parts<'py> {
    span_id: Bound<'py, PyAny>,
    parent: Bound<'py, PyAny>,
    service: Bound<'py, PyAny>,
    operation: Bound<'py, PyAny>,
    target: Bound<'py, PyAny>,
    start_ms: Ms<'py>,
    duration_ms: Ms<'py>,
    self_ms: Ms<'py>,
    depth: Bound<'py, PyAny>,
    kind: Bound<'py, PyAny>,
    status: Bound<'py, PyAny>,
    message: Bound<'py, PyAny>,
    attributes: Bound<'py, PyAny>,
    /// `_events(span.events, origin)`, or None for the shared empty list
    events: Option<Bound<'py, PyAny>>,
    log_ids: Bound<'py, PyAny>,
    exemplar_ids: Bound<'py, PyAny>,
    inferred_ids: Bound<'py, PyAny>,
}

fn parts<'py>(inputs: &Inputs<'_, 'py>, sid: &Bound<'py, PyAny>) -> PyResult<Option<Parts<'py>>> {
    let span = match inputs.by_id.get_item(sid)? {
        Some(span) => span,
        None => return Ok(None),
    };
    let own = match inputs.self_ns.get_item(sid)?.as_ref().and_then(int64) {
        Some(own) => own,
        None => return Ok(None),
    };
    let depth = match inputs.depth.get_item(sid)? {
        Some(depth) => depth,
        None => return Ok(None),
    };
    parts_of(inputs, sid, span, own, depth)
}

/// `parts` of a span already found, with its own time and depth (the tree's columns give them by position).
fn parts_of<'py>(inputs: &Inputs<'_, 'py>, sid: &Bound<'py, PyAny>, span: Bound<'py, PyAny>, own: i64,
                 depth: Bound<'py, PyAny>) -> PyResult<Option<Parts<'py>>> {
    let py = sid.py();
    let names = &inputs.names;
    let (start, end) = match (int64(&names.start.get(&span)?), int64(&names.end.get(&span)?)) {
        (Some(start), Some(end)) => (start, end),
        _ => return Ok(None),
    };
    let (offset, duration) = match (start.checked_sub(inputs.origin), end.checked_sub(start)) {
        (Some(offset), Some(duration)) => (offset, duration),
        _ => return Ok(None),
    };
    let attributes = names.attributes.get(&span)?;
    let kind = names.kind.get(&span)?;
    let target = match inputs.targets.get_item(sid)? {
        Some(known) => known, // what the analysis already worked out
        None => match target_of(&attributes, &kind)? {
            Some(Some(found)) => found,
            Some(None) => py.None().into_bound(py),
            None => inputs.target_slow.call1((&span,))?,
        },
    };
    let events = names.events.get(&span)?;
    let events = if events.is_truthy()? { Some(inputs.events_of.call1((events, inputs.origin))?) } else { None };
    Ok(Some(Parts {
        span_id: names.span_id.get(&span)?,
        parent: names.parent.get(&span)?,
        service: names.service.get(&span)?,
        operation: names.operation.get(&span)?,
        target,
        start_ms: ms(offset, inputs.ms_slow)?,
        duration_ms: ms(duration, inputs.ms_slow)?,
        self_ms: ms(own, inputs.ms_slow)?,
        depth,
        kind,
        status: names.status.get(&span)?,
        message: names.message.get(&span)?,
        attributes,
        events,
        log_ids: ids_or(inputs.logs, sid, inputs.no_ids)?,
        exemplar_ids: ids_or(inputs.exemplars, sid, inputs.no_ids)?,
        inferred_ids: ids_or(inputs.inferred, sid, inputs.no_ids)?,
    }))
}

/// `render._spans`: every span in `order` as its response dict, or None when Python must render them.
/// `ms(ns)`, `events(events, origin)` and `target(span)` are Python's, asked only where this code is not sure.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
fn render_spans<'py>(py: Python<'py>, order: &Bound<'py, PyList>, by_id: &Bound<'py, PyDict>, self_ns: &Bound<'py, PyDict>,
                     depth: &Bound<'py, PyDict>, targets: &Bound<'py, PyDict>, logs: &Bound<'py, PyDict>,
                     exemplars: &Bound<'py, PyDict>, inferred: &Bound<'py, PyDict>, origin: &Bound<'py, PyAny>,
                     no_ids: &Bound<'py, PyList>, no_events: &Bound<'py, PyList>, ms_slow: &Bound<'py, PyAny>,
                     events_of: &Bound<'py, PyAny>, target_slow: &Bound<'py, PyAny>) -> PyResult<Option<Bound<'py, PyList>>> {
    let origin = match int64(origin) {
        Some(origin) => origin,
        None => return Ok(None),
    };
    let inputs = Inputs { by_id, self_ns, depth, targets, logs, exemplars, inferred, origin, no_ids, ms_slow, events_of,
                          target_slow, names: Names::new(py) };
    let names = &inputs.names;
    let intern = |name: &str| PyString::intern(py, name);
    let (k_target, k_start, k_duration, k_self, k_depth, k_log_ids, k_exemplar_ids, k_inferred_ids) = (
        intern("target"), intern("start_ms"), intern("duration_ms"), intern("self_ms"), intern("depth"), intern("log_ids"),
        intern("exemplar_ids"), intern("inferred_log_ids"));
    let out = PyList::empty(py);
    for sid in order.iter() {
        let p = match parts(&inputs, &sid)? {
            Some(p) => p,
            None => return Ok(None),
        };
        // Sized for its keys up front, as a dict display is (no resize while it fills).
        let entry: Bound<'py, PyDict> = unsafe {
            Bound::from_owned_ptr_or_err(py, ffi::_PyDict_NewPresized(17))?.downcast_into_unchecked()
        };
        entry.set_item(&names.span_id.name, p.span_id)?;
        entry.set_item(&names.parent.name, p.parent)?;
        entry.set_item(&names.service.name, p.service)?;
        entry.set_item(&names.operation.name, p.operation)?;
        entry.set_item(&k_target, p.target)?;
        entry.set_item(&k_start, p.start_ms.into_float(py)?)?;
        entry.set_item(&k_duration, p.duration_ms.into_float(py)?)?;
        entry.set_item(&k_self, p.self_ms.into_float(py)?)?;
        entry.set_item(&k_depth, p.depth)?;
        entry.set_item(&names.kind.name, p.kind)?;
        entry.set_item(&names.status.name, p.status)?;
        entry.set_item(&names.message.name, p.message)?;
        // The span's own dict when it is a plain one (as `_spans_python`): nothing mutates a span or a rendered body.
        let shared = unsafe { ffi::PyDict_CheckExact(p.attributes.as_ptr()) } != 0;
        entry.set_item(&names.attributes.name, if shared { p.attributes } else { dict_copy(&p.attributes)? })?;
        match p.events {
            Some(events) => entry.set_item(&names.events.name, events)?,
            None => entry.set_item(&names.events.name, no_events)?,
        }
        entry.set_item(&k_log_ids, p.log_ids)?;
        entry.set_item(&k_exemplar_ids, p.exemplar_ids)?;
        entry.set_item(&k_inferred_ids, p.inferred_ids)?;
        out.append(entry)?;
    }
    Ok(Some(out))
}

// ---------------------------------------------------------------------------------------------------------
// JSON exactly as orjson writes it (compact; `"`, `\` and control characters escaped, the short forms for
// \b \t \n \f \r, `\u00xx` for the rest; everything else as its UTF-8). Whatever is not a plain str, int
// (64-bit), bool, None, list or str-keyed dict of those is written by orjson itself (`dumps(value)`).

/// `k / 1000` as orjson writes that float: its shortest round-trip digits, which for k < 2⁵² are the decimal
/// itself (`12.5`, `0.001`, `7.0`; tests/test_render_spans_native.py checks this against orjson).
fn write_thousandths(out: &mut Buf, k: i64) {
    write_int(out, k / 1000);
    out.push(b'.');
    let fraction = k % 1000;
    if fraction == 0 {
        out.push(b'0');
    } else {
        let digits = [b'0' + (fraction / 100) as u8, b'0' + (fraction / 10 % 10) as u8, b'0' + (fraction % 10) as u8];
        let used = if digits[2] != b'0' { 3 } else if digits[1] != b'0' { 2 } else { 1 };
        out.extend_from_slice(&digits[..used]);
    }
}

/// A span's milliseconds: from the integers, or the float Python's `_ms` gave, by orjson.
fn write_ms<'py>(w: &mut Writer<'_, 'py>, value: Ms<'py>) -> PyResult<()> {
    match value {
        Ms::Thousandths(k) => {
            write_thousandths(&mut w.out, k);
            Ok(())
        }
        Ms::Float(value) => w.by_orjson(&value),
    }
}

/// One span's object, as orjson writes `_spans`' dict.
fn write_span<'py>(w: &mut Writer<'_, 'py>, p: Parts<'py>) -> PyResult<()> {
    w.key(true, b"span_id");
    w.value(&p.span_id)?;
    w.key(false, b"parent_span_id");
    w.value(&p.parent)?;
    w.key(false, b"service");
    w.value(&p.service)?;
    w.key(false, b"operation");
    w.value(&p.operation)?;
    w.key(false, b"target");
    w.value(&p.target)?;
    w.key(false, b"start_ms");
    write_ms(w, p.start_ms)?;
    w.key(false, b"duration_ms");
    write_ms(w, p.duration_ms)?;
    w.key(false, b"self_ms");
    write_ms(w, p.self_ms)?;
    w.key(false, b"depth");
    w.value(&p.depth)?;
    w.key(false, b"kind");
    w.value(&p.kind)?;
    w.key(false, b"status");
    w.value(&p.status)?;
    w.key(false, b"status_message");
    w.value(&p.message)?;
    w.key(false, b"attributes");
    if unsafe { ffi::PyDict_CheckExact(p.attributes.as_ptr()) } != 0 {
        w.nested(&p.attributes)?;
    } else {
        w.by_orjson(&dict_copy(&p.attributes)?)?; // `dict(span.attributes)`, as the dicts hold it
    }
    w.key(false, b"events");
    match p.events {
        Some(events) => w.by_orjson(&events)?,
        None => w.out.extend_from_slice(b"[]"),
    }
    w.key(false, b"log_ids");
    w.nested(&p.log_ids)?;
    w.key(false, b"exemplar_ids");
    w.nested(&p.exemplar_ids)?;
    w.key(false, b"inferred_log_ids");
    w.nested(&p.inferred_ids)?;
    w.out.push(b'}');
    Ok(())
}

/// A span's JSON is ~300 bytes in a usual trace: the output is reserved for that up front (pages are only
/// touched as they are written, and a bigger list grows the buffer in place).
const SPAN_BYTES: usize = 320;

/// The last spans list's bytes object, written over by the next call when nothing holds it any more.
static SPARE: Spare = Spare::new();

/// `orjson.dumps(render._spans(…))` without the dicts: the `spans` list's JSON, or None when Python must render it.
/// `dumps(value)` is orjson with the body's options, for values this code does not write itself.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
fn render_spans_json<'py>(py: Python<'py>, order: &Bound<'py, PyList>, by_id: &Bound<'py, PyDict>, self_ns: &Bound<'py, PyDict>,
                          depth: &Bound<'py, PyDict>, targets: &Bound<'py, PyDict>, logs: &Bound<'py, PyDict>,
                          exemplars: &Bound<'py, PyDict>, inferred: &Bound<'py, PyDict>, origin: &Bound<'py, PyAny>,
                          ms_slow: &Bound<'py, PyAny>, events_of: &Bound<'py, PyAny>, target_slow: &Bound<'py, PyAny>,
                          dumps: &Bound<'py, PyAny>) -> PyResult<Option<Bound<'py, PyBytes>>> {
    let origin = match int64(origin) {
        Some(origin) => origin,
        None => return Ok(None),
    };
    let no_ids = PyList::empty(py);
    let inputs = Inputs { by_id, self_ns, depth, targets, logs, exemplars, inferred, origin, no_ids: &no_ids, ms_slow,
                          events_of, target_slow, names: Names::new(py) };
    let mut w = Writer::reusing(&SPARE, order.len() * SPAN_BYTES + 2, dumps)?;
    w.out.push(b'[');
    for (i, sid) in order.iter().enumerate() {
        let p = match parts(&inputs, &sid)? {
            Some(p) => p,
            None => return Ok(None),
        };
        if i > 0 {
            w.out.push(b',');
        }
        write_span(&mut w, p)?;
    }
    w.out.push(b']');
    Ok(Some(w.out.finish_keeping(py, &SPARE)?))
}

/// The item at `i` of a list known to be longer (borrowed, as a bound reference).
fn item<'py>(list: &Bound<'py, PyList>, i: usize) -> Bound<'py, PyAny> {
    unsafe { Bound::from_borrowed_ptr(list.py(), ffi::PyList_GET_ITEM(list.as_ptr(), i as ffi::Py_ssize_t)) }
}

/// `render_spans_json` from the tree's columns (`spantree.Columns`): `order` the positions in the tree's order and
/// `depths` their depths (parallel), `ids`, `spans` and `own` by position — no lookup by span ID in a 100k-entry dict
/// per span. The same bytes; None when anything is not as the columns promise (Python renders the list then).
#[pyfunction]
#[allow(clippy::too_many_arguments)]
fn render_spans_json_cols<'py>(py: Python<'py>, order: &Bound<'py, PyList>, depths: &Bound<'py, PyList>,
                               ids: &Bound<'py, PyList>, spans: &Bound<'py, PyList>, own: &Bound<'py, PyList>,
                               targets: &Bound<'py, PyDict>, logs: &Bound<'py, PyDict>, exemplars: &Bound<'py, PyDict>,
                               inferred: &Bound<'py, PyDict>, origin: &Bound<'py, PyAny>, ms_slow: &Bound<'py, PyAny>,
                               events_of: &Bound<'py, PyAny>, target_slow: &Bound<'py, PyAny>,
                               dumps: &Bound<'py, PyAny>) -> PyResult<Option<Bound<'py, PyBytes>>> {
    let origin = match int64(origin) {
        Some(origin) => origin,
        None => return Ok(None),
    };
    let n = ids.len();
    if order.len() != depths.len() || spans.len() != n || own.len() != n {
        return Ok(None);
    }
    let no_ids = PyList::empty(py);
    let unused = PyDict::new(py);
    let inputs = Inputs { by_id: &unused, self_ns: &unused, depth: &unused, targets, logs, exemplars, inferred, origin,
                          no_ids: &no_ids, ms_slow, events_of, target_slow, names: Names::new(py) };
    let mut w = Writer::reusing(&SPARE, order.len() * SPAN_BYTES + 2, dumps)?;
    w.out.push(b'[');
    for i in 0..order.len() {
        // The lists are read again at each step: a callable asked below (events, a target) may change them.
        if i >= order.len() || i >= depths.len() || ids.len() != n || spans.len() != n || own.len() != n {
            return Ok(None);
        }
        let at = match int64(&item(order, i)) {
            Some(at) if at >= 0 && (at as usize) < n => at as usize,
            _ => return Ok(None),
        };
        let own_ns = match int64(&item(own, at)) {
            Some(own_ns) => own_ns,
            None => return Ok(None),
        };
        let p = match parts_of(&inputs, &item(ids, at), item(spans, at), own_ns, item(depths, i))? {
            Some(p) => p,
            None => return Ok(None),
        };
        if i > 0 {
            w.out.push(b',');
        }
        write_span(&mut w, p)?;
    }
    w.out.push(b']');
    Ok(Some(w.out.finish_keeping(py, &SPARE)?))
}

/// Adds this module's functions to the extension module (lib.rs calls it).
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(normalise_statement, m)?)?;
    m.add_function(wrap_pyfunction!(normalise_path, m)?)?;
    m.add_function(wrap_pyfunction!(span_target, m)?)?;
    m.add_function(wrap_pyfunction!(render_spans, m)?)?;
    m.add_function(wrap_pyfunction!(render_spans_json, m)?)?;
    m.add_function(wrap_pyfunction!(render_spans_json_cols, m)?)?;
    tree::register(m)?;
    Ok(())
}
