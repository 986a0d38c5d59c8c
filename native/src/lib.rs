//! The correlator's per-log-line hot loop, natively: one stream's Loki entries → LogLines.
//!
//! The Python code in `correlator/sources/loki.py` and `correlator/logfields.py` is the reference;
//! this module does exactly what it does for the common cases and hands everything else back:
//!
//! - a stream whose `values` it cannot read exactly (not an array of `[string, string, value?]`,
//!   a timestamp that is not plain digits, JSON serde_json refuses) → `None`: Python parses the
//!   whole answer its own way;
//! - a line that may be a JSON body (first character `{`, whitespace or non-ASCII) or where a
//!   `\s` would meet a non-ASCII character → the Python finder for that line;
//! - a line with no span ID that holds a hint of a well-known shape (`[`, `00-`, `dd.` …) → the
//!   Python `idformats.from_text` for its span ID;
//! - each distinct metadata object → decoded by Python once (per answer, as the Python path).
//!
//! tests/test_native.py runs both paths on every Loki fixture and generated lines and compares.
//!
//! `LokiLines.answer` (loki_answer.rs) reads a whole answer in one pass, envelope included, with these entries' rules;
//! `LokiMemo` lets a `fetch`'s lookups share the entries they read (tests/test_loki_same.py).

mod otlp;

use std::borrow::Cow;
use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};

use pyo3::buffer::PyBuffer;
use pyo3::exceptions::PyTypeError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple, PyType};
use serde::de::{self, Deserialize, DeserializeSeed, Deserializer, IgnoredAny, SeqAccess, Visitor};
use serde_json::value::RawValue;

mod render_spans;
mod analysis;
mod json_out;
mod logs_json;
mod loki_answer;
mod exemplars;
mod quotes;
mod construct;
mod critical;
mod body_json;
mod group;
mod fan_out;

/// Values remembered per answer (metadata by bytes, shared strings), as the Python path's `_Sharing.LIMIT`.
const LIMIT: usize = 4096;

/// `LokiLines::shared_at`'s call sites: a line's span ID, its level; and the values remembered for each.
const RECENT_SPAN: usize = 0;
const RECENT_LEVEL: usize = 1;
const RECENT_SLOTS: usize = 64;

/// Where a value is remembered in its call site's table: a multiplicative hash of its bytes, eight at a time.
fn recent_slot(value: &[u8]) -> usize {
    let mut hash = value.len() as u64;
    for chunk in value.chunks(8) {
        let mut word = [0u8; 8];
        word[..chunk.len()].copy_from_slice(chunk);
        hash = (hash.rotate_left(23) ^ u64::from_le_bytes(word)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
    (hash >> 58) as usize % RECENT_SLOTS
}

/// A JSON string, borrowed from the body when it has no escapes.
struct Text<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(TextVisitor)
    }
}

/// One entry: `[timestamp_ns as a string, line, metadata?]` (nothing after the metadata), as `EntrySeed` reads it.
struct Entry<'a> {
    timestamp: Text<'a>,
    line: Text<'a>,
    metadata: Option<&'a RawValue>,
}

/// A line with JSON escapes is decoded by serde into its scratch and handed over as a `&str` that lives only for the
/// call: copied into `scratch` (kept by `LokiLines` from line to line) instead of a new `String` per line.
struct LineSeed<'s> {
    scratch: &'s mut String,
}

impl<'de, 's> DeserializeSeed<'de> for LineSeed<'s> {
    /// The line when it stands in the body as it is; None: it is in `scratch`.
    type Value = Option<&'de str>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de, 's> Visitor<'de> for LineSeed<'s> {
    type Value = Option<&'de str>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Some(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        self.scratch.clear();
        self.scratch.push_str(v);
        Ok(None)
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        *self.scratch = v;
        Ok(None)
    }
}

/// The entry reader: `[timestamp, line, metadata?]`, anything else an error ("Python's answer"); the line as `LineSeed` reads it.
struct EntrySeed<'s> {
    scratch: &'s mut String,
}

/// An entry as `EntrySeed` reads it: the line None when it is in the scratch.
struct SeededEntry<'de> {
    timestamp: Text<'de>,
    line: Option<&'de str>,
    metadata: Option<&'de RawValue>,
}

impl<'de, 's> DeserializeSeed<'de> for EntrySeed<'s> {
    type Value = SeededEntry<'de>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de, 's> Visitor<'de> for EntrySeed<'s> {
    type Value = SeededEntry<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("[timestamp, line, metadata?]")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let timestamp: Text<'de> = seq.next_element()?.ok_or_else(|| de::Error::custom("no timestamp"))?;
        let line = seq.next_element_seed(LineSeed { scratch: self.scratch })?.ok_or_else(|| de::Error::custom("no line"))?;
        let metadata: Option<&'de RawValue> = seq.next_element()?;
        if metadata.is_some() && seq.next_element::<IgnoredAny>()?.is_some() {
            return Err(de::Error::custom("more than three elements"));
        }
        Ok(SeededEntry { timestamp, line, metadata })
    }
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Python's `str.isspace` / `re`'s `\s` on an ASCII character.
fn is_ascii_space(b: u8) -> bool {
    matches!(b, 9..=13 | 28..=32)
}

fn is_hex(b: u8) -> bool {
    b.is_ascii_hexdigit()
}

/// What a search found: a value (where it stands in the line; a span ID already normalised), nothing, or a
/// case only the Python regex can settle. No allocation per line: the caller looks the value up as it is.
enum Found {
    Value(usize, usize),
    Span([u8; 16]),
    Nothing,
    Unsure,
}

/// Which kind of value follows a `name=` pair: a span ID (`[0-9a-fA-F]{1,16}`) or a level (`[A-Za-z]+`).
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Span,
    Level,
}

/// `(?:\\?["'])?` at `p`: where it ends.
fn optional_quote(s: &[u8], p: usize) -> usize {
    if p + 1 < s.len() && s[p] == b'\\' && (s[p + 1] == b'"' || s[p + 1] == b'\'') {
        p + 2
    } else if p < s.len() && (s[p] == b'"' || s[p] == b'\'') {
        p + 1
    } else {
        p
    }
}

/// `\s*` at `p`: where it ends, or None when a non-ASCII character stands there (Unicode whitespace
/// is Python's to judge).
fn spaces(s: &[u8], mut p: usize) -> Option<usize> {
    while p < s.len() {
        if is_ascii_space(s[p]) {
            p += 1;
        } else if s[p] >= 0x80 {
            return None;
        } else {
            break;
        }
    }
    Some(p)
}

/// The pattern after the field name: `(?:\\?["'])?\s*[:=]\s*(?:\\?["'])?(VALUE)(?![0-9A-Za-z_])`.
/// Every optional part is followed by something it cannot start with, so no backtracking can
/// find another match: the first try is the regex's answer. Some((start, end)) of VALUE.
fn pair_tail(s: &[u8], p: usize, kind: Kind) -> Result<Option<(usize, usize)>, ()> {
    let p = optional_quote(s, p);
    let p = spaces(s, p).ok_or(())?;
    if p >= s.len() || (s[p] != b':' && s[p] != b'=') {
        return Ok(None);
    }
    let p = spaces(s, p + 1).ok_or(())?;
    let start = optional_quote(s, p);
    let mut end = start;
    match kind {
        Kind::Span => {
            while end < s.len() && is_hex(s[end]) && end - start < 17 {
                end += 1;
            }
            if end == start || end - start > 16 {
                return Ok(None);
            }
        }
        Kind::Level => {
            while end < s.len() && s[end].is_ascii_alphabetic() {
                end += 1;
            }
            if end == start {
                return Ok(None);
            }
        }
    }
    if end < s.len() && is_word(s[end]) {
        return Ok(None);
    }
    Ok(Some((start, end)))
}

/// `ids.normalise_span_id` of 1-16 hex characters: 16 lower-case hex, None for all zeros.
fn normalise_span(hex: &[u8]) -> Option<[u8; 16]> {
    let mut out = [b'0'; 16];
    for (slot, &b) in out[16 - hex.len()..].iter_mut().zip(hex) {
        *slot = b.to_ascii_lowercase();
    }
    if out.iter().all(|&b| b == b'0') {
        None
    } else {
        Some(out)
    }
}

/// The bytes the field names start with: a table, and the distinct bytes (most configurations have 1-3, found
/// with `memchr`'s vector search instead of a look at every byte).
struct Firsts {
    table: [bool; 256],
    bytes: Vec<u8>,
}

impl Firsts {
    /// The first position at or after `from` holding a name's first byte.
    fn next(&self, s: &[u8], from: usize) -> Option<usize> {
        let rest = &s[from..];
        let found = match *self.bytes.as_slice() {
            [a] => memchr::memchr(a, rest),
            [a, b] => memchr::memchr2(a, b, rest),
            [a, b, c] => memchr::memchr3(a, b, c, rest),
            _ => rest.iter().position(|&c| self.table[c as usize]),
        };
        found.map(|i| from + i)
    }
}

/// `haystack.starts_with(name)` for the short field names, compared inline: `starts_with` calls `memcmp` for every
/// candidate position (a few per line, most failing at the first or second byte).
#[inline]
fn starts_with(haystack: &[u8], name: &[u8]) -> bool {
    haystack.len() >= name.len() && haystack.iter().zip(name).all(|(a, b)| a == b)
}

/// `logfields._search`: the first `name=value` pair (names longest first) whose value converts.
fn search_pair(s: &[u8], names: &[Vec<u8>], firsts: &Firsts, kind: Kind) -> Found {
    let mut q = 0;
    // After a match whose value does not convert, the next match starts after it: its name one further.
    let mut not_before = 0;
    while q < s.len() {
        q = match firsts.next(s, q) {
            Some(at) => at,
            None => break,
        };
        if q < not_before || (q > 0 && (is_word(s[q - 1]) || s[q - 1] == b'.')) {
            q += 1;
            continue;
        }
        let mut matched = None;
        for name in names {
            if starts_with(&s[q..], name) {
                match pair_tail(s, q + name.len(), kind) {
                    Err(()) => return Found::Unsure,
                    Ok(Some(span)) => {
                        matched = Some(span);
                        break;
                    }
                    Ok(None) => {}
                }
            }
        }
        if let Some((start, end)) = matched {
            let value = &s[start..end];
            match kind {
                Kind::Level => return Found::Value(start, end),
                Kind::Span => {
                    if let Some(id) = normalise_span(value) {
                        return Found::Span(id);
                    }
                    not_before = end + 1;
                    q = end;
                    continue;
                }
            }
        }
        q += 1;
    }
    Found::Nothing
}

const BARE_LEVELS: [&[u8]; 9] = [b"TRACE", b"DEBUG", b"INFO", b"NOTICE", b"WARN", b"WARNING", b"ERROR", b"FATAL", b"CRITICAL"];

/// `logfields._search_bare_level`: the first whole run of ASCII letters that is an upper-case severity (where it stands).
fn bare_level(s: &[u8]) -> Option<(usize, usize)> {
    let mut i = 0;
    while i < s.len() {
        if s[i].is_ascii_alphabetic() {
            let start = i;
            while i < s.len() && s[i].is_ascii_alphabetic() {
                i += 1;
            }
            let run = &s[start..i];
            if BARE_LEVELS.contains(&run) {
                return Some((start, i));
            }
        } else {
            i += 1;
        }
    }
    None
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// Digits only (what Loki writes): the value, else None (Python's `int()` takes more; it gets the answer).
fn timestamp(text: &str) -> Option<u64> {
    if text.is_empty() || text.len() > 19 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// BLAKE2b-64's parameters, made once (`Params::new` looks the CPU's features up and fills a key block each time).
fn line_id_params() -> &'static blake2b_simd::Params {
    static PARAMS: std::sync::OnceLock<blake2b_simd::Params> = std::sync::OnceLock::new();
    PARAMS.get_or_init(|| {
        let mut params = blake2b_simd::Params::new();
        params.hash_length(8);
        params
    })
}

/// `loki._line_id`: "log-" + blake2b(f"{ts}{prefix}{line}", digest_size=8).hexdigest(), on the stack.
/// The three parts joined on the stack and hashed in one call (no incremental state, its buffer and copies).
fn line_id_bytes(ts: &[u8], prefix: &[u8], line: &[u8]) -> [u8; 20] {
    let total = ts.len() + prefix.len() + line.len();
    let mut small = [0u8; 256];
    let hash = if total <= small.len() {
        small[..ts.len()].copy_from_slice(ts);
        small[ts.len()..ts.len() + prefix.len()].copy_from_slice(prefix);
        small[ts.len() + prefix.len()..total].copy_from_slice(line);
        line_id_params().hash(&small[..total])
    } else {
        let mut joined = Vec::with_capacity(total);
        joined.extend_from_slice(ts);
        joined.extend_from_slice(prefix);
        joined.extend_from_slice(line);
        line_id_params().hash(&joined)
    };
    let digest = hash.as_bytes();
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = *b"log-0000000000000000";
    for (i, b) in digest.iter().enumerate() {
        out[4 + 2 * i] = HEX[(b >> 4) as usize];
        out[5 + 2 * i] = HEX[(b & 15) as usize];
    }
    out
}

fn line_id(ts: &str, prefix: &[u8], line: &[u8]) -> String {
    String::from_utf8(line_id_bytes(ts.as_bytes(), prefix, line).to_vec()).expect("ASCII")
}

/// An ASCII text (a line ID, a span ID, a level) as a new str: no UTF-8 decoding, one copy.
fn ascii_str(py: Python<'_>, text: &[u8]) -> PyResult<PyObject> {
    debug_assert!(text.is_ascii());
    unsafe {
        let obj = ffi::PyUnicode_New(text.len() as ffi::Py_ssize_t, 127);
        if obj.is_null() {
            return Err(PyErr::fetch(py));
        }
        std::ptr::copy_nonoverlapping(text.as_ptr(), ffi::PyUnicode_DATA(obj) as *mut u8, text.len());
        Ok(PyObject::from_owned_ptr(py, obj))
    }
}

fn name_list(names: Vec<String>) -> (Vec<Vec<u8>>, Firsts) {
    // Longest first, equal lengths in the configured order (`logfields._names`: a stable sort).
    let mut sorted: Vec<Vec<u8>> = names.into_iter().map(String::into_bytes).collect();
    sorted.sort_by_key(|name| std::cmp::Reverse(name.len()));
    let mut firsts = Firsts { table: [false; 256], bytes: Vec::new() };
    for name in &sorted {
        if let Some(&b) = name.first() {
            if !firsts.table[b as usize] {
                firsts.table[b as usize] = true;
                firsts.bytes.push(b);
            }
        }
    }
    sorted.retain(|n| !n.is_empty());
    (sorted, firsts)
}

/// What one distinct metadata object means: (the mapping or None when not an object, span ID, level).
struct Meta {
    found: PyObject,
    span: PyObject,
    level: PyObject,
}

/// One answer's parse state: the settings' field names, the Python fallbacks, what is shared.
#[pyclass(module = "correlator_native")]
struct LokiLines {
    span_names: Vec<Vec<u8>>,
    span_firsts: Firsts,
    level_names: Vec<Vec<u8>>,
    level_firsts: Firsts,
    span_hints: Vec<Vec<u8>>,
    line_class: Py<PyType>,
    attributes: Vec<Py<PyString>>,
    find_line: PyObject,
    span_from_text: PyObject,
    decode_metadata: PyObject,
    by_bytes: HashMap<Vec<u8>, Meta>,
    /// The last metadata bytes and what they mean: consecutive entries mostly carry the same (no hashing then).
    last_meta: Option<(Vec<u8>, Meta)>,
    texts: HashMap<Vec<u8>, PyObject>,
    /// Values `shared_at` gave lately, and their bytes: `RECENT_SLOTS` per call site.
    recent: Vec<Option<(Vec<u8>, PyObject)>>,
    /// Where each field's slot sits in a LogLine, when every field is a plain object slot (see `slot_offsets`).
    slots: Option<[ffi::Py_ssize_t; 8]>,
    /// The lines of entries already read, by what they are read from (`LokiMemo`), during `answer` when given one.
    memo: Option<MemoTable>,
    /// The memo key being written (kept to reuse its allocation).
    memo_key: Vec<u8>,
    /// A line with JSON escapes, decoded (kept to reuse its allocation: `EntrySeed`).
    line_scratch: String,
}

/// Entries read in one `fetch` (its lookups' answers), shared by their parses: a real Loki returns an OTLP-ingested
/// line to both lookups, and an entry read from the same bytes in a stream of the same labels is the same LogLine.
#[pyclass(module = "correlator_native")]
struct LokiMemo {
    table: MemoTable,
}

#[pymethods]
impl LokiMemo {
    #[new]
    fn new() -> Self {
        LokiMemo { table: MemoTable::default() }
    }

    fn __len__(&self) -> usize {
        self.table.slots.len()
    }
}

/// The hash is already a keyed SipHash of the entry (`MemoTable::hash`): the table takes it as it is.
#[derive(Default)]
struct Passthrough(u64);

impl Hasher for Passthrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only u64 keys are hashed here; anything else still hashes (FNV-1a), never panics.
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
    }
    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

/// Entries read → their LogLines, by a keyed SipHash of the entry's bytes computed once per entry (bench P3: a
/// `HashMap<Vec<u8>, _>` hashed each ~150-byte key up to three times — look-up, insert, growth — which cost more than
/// the second lookup's reads it saved). Two entries whose hashes meet (never, without the random key) share no slot:
/// the later is read, not remembered — the memo only saves work, it never decides a line.
struct MemoTable {
    keys: RandomState,
    slots: HashMap<u64, (Vec<u8>, PyObject), BuildHasherDefault<Passthrough>>,
}

impl Default for MemoTable {
    fn default() -> Self {
        // Two lookups of ~20 lines without growing; bigger answers grow it as any map.
        MemoTable { keys: RandomState::new(), slots: HashMap::with_capacity_and_hasher(64, BuildHasherDefault::default()) }
    }
}

impl MemoTable {
    fn hash(&self, key: &[u8]) -> u64 {
        self.keys.hash_one(key)
    }

    fn get(&self, hash: u64, key: &[u8]) -> Option<&PyObject> {
        match self.slots.get(&hash) {
            Some((kept, line)) if kept.as_slice() == key => Some(line),
            _ => None,
        }
    }

    fn insert(&mut self, hash: u64, key: &[u8], line: PyObject) {
        if self.slots.len() < MEMO_LIMIT {
            self.slots.entry(hash).or_insert_with(|| (key.to_vec(), line));
        }
    }
}

/// Entries remembered per `LokiMemo` (two lookups of `loki.max_lines`, or `fetch_many`'s 5000 each).
const MEMO_LIMIT: usize = 10_000;

impl LokiLines {
    /// One str per distinct ASCII value (a span ID, a level) within the answer (bounded by LIMIT), the values last
    /// given remembered per call site (`RECENT_SPAN`, `RECENT_LEVEL`) in a small table by a cheap hash of their bytes:
    /// a stream's lines repeat their level and a few span IDs, and comparing 16 bytes is cheaper than SipHash. The
    /// table only ever answers what the map holds (a value is remembered only then); a miss, or values a backend
    /// made to collide there, go to the map as before.
    fn shared_at(&mut self, py: Python<'_>, site: usize, value: &[u8]) -> PyResult<PyObject> {
        let slot = site * RECENT_SLOTS + recent_slot(value);
        if let Some((bytes, kept)) = &self.recent[slot] {
            if bytes.as_slice() == value {
                return Ok(kept.clone_ref(py));
            }
        }
        let (text, held) = match self.texts.get(value) {
            Some(kept) => (kept.clone_ref(py), true),
            None => {
                let text = ascii_str(py, value)?;
                let held = self.texts.len() < LIMIT;
                if held {
                    self.texts.insert(value.to_vec(), text.clone_ref(py));
                }
                (text, held)
            }
        };
        if held {
            match &mut self.recent[slot] {
                Some((bytes, kept)) => {
                    bytes.clear();
                    bytes.extend_from_slice(value);
                    *kept = text.clone_ref(py);
                }
                None => self.recent[slot] = Some((value.to_vec(), text.clone_ref(py))),
            }
        }
        Ok(text)
    }

    /// `shared_at` of the value lower-cased (a level as `logfields` gives it).
    fn shared_lower(&mut self, py: Python<'_>, value: &[u8]) -> PyResult<PyObject> {
        let mut small = [0u8; 32];
        if value.len() <= small.len() {
            let small = &mut small[..value.len()];
            small.copy_from_slice(value);
            small.make_ascii_lowercase();
            self.shared_at(py, RECENT_LEVEL, small)
        } else {
            self.shared_at(py, RECENT_LEVEL, &value.to_ascii_lowercase())
        }
    }

    fn metadata(&mut self, py: Python<'_>, raw: &RawValue) -> PyResult<(PyObject, PyObject, PyObject)> {
        let key = raw.get().as_bytes();
        if let Some((last, meta)) = &self.last_meta {
            if last.as_slice() == key {
                return Ok((meta.found.clone_ref(py), meta.span.clone_ref(py), meta.level.clone_ref(py)));
            }
        }
        let (found, span, level) = if let Some(meta) = self.by_bytes.get(key) {
            (meta.found.clone_ref(py), meta.span.clone_ref(py), meta.level.clone_ref(py))
        } else {
            let decoded = self.decode_metadata.bind(py).call1((PyBytes::new(py, key),))?;
            let (found, span, level): (PyObject, PyObject, PyObject) = decoded.extract()?;
            if self.by_bytes.len() < LIMIT {
                let meta = Meta { found: found.clone_ref(py), span: span.clone_ref(py), level: level.clone_ref(py) };
                self.by_bytes.insert(key.to_vec(), meta);
            }
            (found, span, level)
        };
        // Remembered only when the map holds it too: what the map answers is what the last-seen copy answers.
        if self.by_bytes.contains_key(key) {
            let meta = Meta { found: found.clone_ref(py), span: span.clone_ref(py), level: level.clone_ref(py) };
            match &mut self.last_meta {
                Some((last, kept)) => {
                    last.clear();
                    last.extend_from_slice(key);
                    *kept = meta;
                }
                None => self.last_meta = Some((key.to_vec(), meta)),
            }
        }
        Ok((found, span, level))
    }

    /// (span ID, level) of one line, as `logfields.span_and_level_finder`'s `find`.
    fn span_and_level(&mut self, py: Python<'_>, line: &str, text: &Bound<'_, PyString>, meta: &PyObject,
                      meta_span: &PyObject, meta_level: &PyObject) -> PyResult<(PyObject, PyObject)> {
        let s = line.as_bytes();
        // A body that may be JSON (`logfields._json_object`): the Python finder, fields, paths and all.
        let json_like = !s.is_empty() && (s[0] == b'{' || s[0] >= 0x80 || is_ascii_space(s[0]));
        if !json_like {
            let mut span = if meta_span.is_none(py) { None } else { Some(meta_span.clone_ref(py)) };
            let mut unsure = false;
            if span.is_none() {
                match search_pair(s, &self.span_names, &self.span_firsts, Kind::Span) {
                    Found::Span(id) => span = Some(self.shared_at(py, RECENT_SPAN, &id)?),
                    Found::Value(..) | Found::Nothing => {}
                    Found::Unsure => unsure = true,
                }
            }
            let mut level = None;
            if !unsure {
                match search_pair(s, &self.level_names, &self.level_firsts, Kind::Level) {
                    Found::Value(start, end) => level = Some(self.shared_lower(py, &s[start..end])?),
                    Found::Span(_) | Found::Nothing => {}
                    Found::Unsure => unsure = true,
                }
            }
            if !unsure {
                let level = match level {
                    Some(level) => level,
                    None if !meta_level.is_none(py) => meta_level.clone_ref(py),
                    None => match bare_level(s) {
                        Some((start, end)) => self.shared_lower(py, &s[start..end])?,
                        None => py.None(),
                    },
                };
                let span = match span {
                    Some(span) => span,
                    None if self.span_hints.iter().any(|h| contains(s, h)) => self.span_from_text.bind(py).call1((text,))?.unbind(),
                    None => py.None(),
                };
                return Ok((span, level));
            }
        }
        let found = self.find_line.bind(py).call1((text, meta))?;
        found.extract()
    }
}

/// The slot offset of each field in `class` when `object.__setattr__` would store exactly there: the class's
/// attribute is a member descriptor of an object slot (a slotted dataclass's fields are). None otherwise.
fn slot_offsets(py: Python<'_>, class: &Py<PyType>, attributes: &[Py<PyString>]) -> Option<[ffi::Py_ssize_t; 8]> {
    let mut offsets = [0; 8];
    for (offset, name) in offsets.iter_mut().zip(attributes) {
        let descr = class.bind(py).getattr(name.bind(py)).ok()?;
        unsafe {
            if ffi::Py_TYPE(descr.as_ptr()) != std::ptr::addr_of_mut!(ffi::PyMemberDescr_Type) {
                return None;
            }
            let member = (*(descr.as_ptr() as *mut ffi::PyMemberDescrObject)).d_member as *mut ffi::PyMemberDef;
            if member.is_null() || (*member).type_code != ffi::Py_T_OBJECT_EX || (*member).flags & ffi::Py_READONLY != 0 {
                return None;
            }
            *offset = (*member).offset;
        }
    }
    Some(offsets)
}

/// Whether the cyclic collector could reach anything through `value` (a str, an int, None, a dict of strs: no).
fn gc_visible(value: &PyObject) -> bool {
    unsafe { ffi::PyObject_IS_GC(value.as_ptr()) != 0 && ffi::PyObject_GC_IsTracked(value.as_ptr()) != 0 }
}

/// A new instance of the (frozen, slotted) LogLine dataclass with its eight fields set, as its
/// `__init__` sets them (`object.__setattr__`), without a Python frame per line: straight into the slots
/// when `slots` knows them (what the member descriptors' `__set__` does on a new object), else by setattr.
/// A line holding nothing the collector tracks (strs, ints, None, dicts of strs: nearly every line) is
/// untracked, as CPython untracks such tuples and dicts: no cycle can pass through it, and every collection
/// while a big answer is alive would otherwise walk its 50k lines.
fn build_line(py: Python<'_>, class: &Py<PyType>, attributes: &[Py<PyString>], slots: Option<&[ffi::Py_ssize_t; 8]>,
              values: [&PyObject; 8]) -> PyResult<PyObject> {
    unsafe {
        let obj = ffi::PyType_GenericAlloc(class.as_ptr() as *mut ffi::PyTypeObject, 0);
        if obj.is_null() {
            return Err(PyErr::fetch(py));
        }
        let obj: PyObject = PyObject::from_owned_ptr(py, obj);
        if let Some(offsets) = slots {
            for (&offset, value) in offsets.iter().zip(values) {
                let slot = (obj.as_ptr() as *mut u8).offset(offset) as *mut *mut ffi::PyObject;
                let old = *slot;
                ffi::Py_INCREF(value.as_ptr());
                *slot = value.as_ptr();
                ffi::Py_XDECREF(old);
            }
            if !values.iter().any(|value| gc_visible(value)) && ffi::PyObject_GC_IsTracked(obj.as_ptr()) != 0 {
                ffi::PyObject_GC_UnTrack(obj.as_ptr() as *mut std::ffi::c_void);
            }
            return Ok(obj);
        }
        for (name, value) in attributes.iter().zip(values) {
            if ffi::PyObject_GenericSetAttr(obj.as_ptr(), name.as_ptr(), value.as_ptr()) != 0 {
                return Err(PyErr::fetch(py));
            }
        }
        Ok(obj)
    }
}

#[pymethods]
impl LokiLines {
    /// `line_class`: LogLine; `attributes`: its eight field names in order. `find_line(line, metadata)`:
    /// the Python finder's (span ID, level). `span_from_text(line)`: `idformats.from_text(line, False).span_id`.
    /// `decode_metadata(raw bytes)`: (mapping or None, its span ID, its level).
    #[new]
    #[allow(clippy::too_many_arguments)]
    fn new(line_class: Py<PyType>, attributes: Vec<Py<PyString>>, span_fields: Vec<String>, level_fields: Vec<String>,
           span_hints: Vec<String>, find_line: PyObject, span_from_text: PyObject, decode_metadata: PyObject) -> PyResult<Self> {
        if attributes.len() != 8 {
            return Err(PyTypeError::new_err("LogLine must have exactly 8 fields"));
        }
        let (span_names, span_firsts) = name_list(span_fields);
        let (level_names, level_firsts) = name_list(level_fields);
        let slots = Python::with_gil(|py| slot_offsets(py, &line_class, &attributes));
        Ok(LokiLines {
            slots,
            span_names,
            span_firsts,
            level_names,
            level_firsts,
            span_hints: span_hints.into_iter().map(String::into_bytes).collect(),
            line_class,
            attributes,
            find_line,
            span_from_text,
            decode_metadata,
            by_bytes: HashMap::new(),
            last_meta: None,
            texts: HashMap::new(),
            recent: (0..2 * RECENT_SLOTS).map(|_| None).collect(),
            memo: None,
            memo_key: Vec::new(),
            line_scratch: String::new(),
        })
    }

    /// One stream's `values` (the undecoded JSON array) → its LogLines, or None when Python must
    /// parse the answer (see the module's comment).
    #[allow(clippy::too_many_arguments)]
    fn stream(&mut self, py: Python<'_>, values: PyBuffer<u8>, prefix: &str, service: PyObject, labels: PyObject,
              label_level: PyObject, default_meta: PyObject, default_span: PyObject,
              default_level: PyObject) -> PyResult<Option<Py<PyList>>> {
        if !values.is_c_contiguous() {
            return Ok(None);
        }
        // The buffer is read-only for us and its owner is kept alive by the caller for this call.
        let raw: &[u8] = unsafe { std::slice::from_raw_parts(values.buf_ptr() as *const u8, values.len_bytes()) };
        let stream = StreamContext { prefix: prefix.as_bytes(), service, labels, label_level, default_meta, default_span, default_level,
                                     memo_prefix: &[] };
        let out = PyList::empty(py);
        // Each entry becomes its LogLine as it is read: no entry outlives its line (bench P5: the body is held already).
        let mut failure: Option<PyErr> = None;
        let mut deserializer = serde_json::Deserializer::from_slice(raw);
        let seed = Entries { lines: self, py, stream: &stream, out: &out, failure: &mut failure };
        let read = seed.deserialize(&mut deserializer).and_then(|()| deserializer.end());
        if let Some(err) = failure {
            return Err(err);
        }
        Ok(if read.is_ok() { Some(out.unbind()) } else { None })
    }

    /// A whole answer's bytes → its LogLines in one pass (`loki_answer.rs`), or None when the answer must
    /// go the two-pass way (`stream` per stream). `context(labels JSON bytes, categorized)`: the stream's
    /// (prefix, service, labels, label level, default metadata, its span ID, its level), or None.
    /// `memo`: entries read by earlier answers (the same `fetch`'s other lookups), taken and added to.
    #[pyo3(signature = (body, context, memo=None))]
    fn answer(&mut self, py: Python<'_>, body: PyBuffer<u8>, context: &Bound<'_, PyAny>,
              memo: Option<&Bound<'_, LokiMemo>>) -> PyResult<Option<Py<PyList>>> {
        if !body.is_c_contiguous() {
            return Ok(None);
        }
        // Read-only for us; the caller keeps its owner alive for this call.
        let raw: &[u8] = unsafe { std::slice::from_raw_parts(body.buf_ptr() as *const u8, body.len_bytes()) };
        self.memo = memo.map(|m| std::mem::take(&mut m.borrow_mut().table));
        let read = loki_answer::read(self, py, raw, context);
        if let (Some(m), Some(table)) = (memo, self.memo.take()) {
            m.borrow_mut().table = table;
        }
        read
    }

    /// Ready for another answer, as a new reader made with the same settings and this `decode_metadata` would be: what
    /// it remembered of the last answer (metadata by bytes, shared and recent strings) forgotten, its tables' room kept (bench P3:
    /// making and dropping a reader was ~30 k instructions per lookup).
    fn renew(&mut self, decode_metadata: PyObject) {
        self.decode_metadata = decode_metadata;
        self.by_bytes.clear();
        self.last_meta = None;
        self.texts.clear();
        self.recent.iter_mut().for_each(|slot| *slot = None);
        self.memo = None;
    }
}

/// What every line of one stream shares.
struct StreamContext<'a> {
    prefix: &'a [u8],
    service: PyObject,
    labels: PyObject,
    label_level: PyObject,
    default_meta: PyObject,
    default_span: PyObject,
    default_level: PyObject,
    /// What the stream's lines depend on besides the entry (its labels' JSON and the answer's shape), as the
    /// memo key's head; empty when no memo is used.
    memo_prefix: &'a [u8],
}

impl LokiLines {
    /// One entry → its LogLine (the memo's, when an earlier answer read the same entry in the same kind of stream).
    fn line(&mut self, py: Python<'_>, stream: &StreamContext<'_>, entry: &Entry<'_>) -> PyResult<Option<PyObject>> {
        if self.memo.is_none() {
            return self.read_line(py, stream, entry);
        }
        // 0xFF never stands in UTF-8: the parts cannot run into each other. The metadata's raw bytes: equal bytes, equal meaning.
        let mut key = std::mem::take(&mut self.memo_key);
        key.clear();
        key.extend_from_slice(stream.memo_prefix);
        key.push(0xFF);
        key.extend_from_slice(entry.timestamp.0.as_bytes());
        key.push(0xFF);
        key.extend_from_slice(entry.line.0.as_bytes());
        if let Some(raw) = entry.metadata {
            key.push(0xFF);
            key.extend_from_slice(raw.get().as_bytes());
        }
        let table = self.memo.as_ref().expect("checked above");
        let hash = table.hash(&key);
        let got = if let Some(kept) = table.get(hash, &key) {
            Ok(Some(kept.clone_ref(py)))
        } else {
            let got = self.read_line(py, stream, entry);
            if let (Ok(Some(line)), Some(table)) = (&got, self.memo.as_mut()) {
                table.insert(hash, &key, line.clone_ref(py));
            }
            got
        };
        self.memo_key = key;
        got
    }

    /// One entry → its LogLine; None when Python must read the answer (a timestamp `int()` would read otherwise).
    fn read_line(&mut self, py: Python<'_>, stream: &StreamContext<'_>, entry: &Entry<'_>) -> PyResult<Option<PyObject>> {
        let ts = match timestamp(&entry.timestamp.0) {
            Some(ts) => ts,
            None => return Ok(None),
        };
        let line: &str = &entry.line.0;
        // An ASCII line (nearly all): the str made and copied directly, without a second UTF-8 decode (serde checked it).
        let text = if line.is_ascii() {
            unsafe { ascii_str(py, line.as_bytes())?.into_bound(py).downcast_into_unchecked::<PyString>() }
        } else {
            PyString::new(py, line)
        };
        let (meta, meta_span, meta_level) = match entry.metadata {
            Some(raw) => {
                let (found, span, level) = self.metadata(py, raw)?;
                if found.is_none(py) {
                    (stream.default_meta.clone_ref(py), stream.default_span.clone_ref(py), stream.default_level.clone_ref(py))
                } else {
                    (found, span, level)
                }
            }
            None => (stream.default_meta.clone_ref(py), stream.default_span.clone_ref(py), stream.default_level.clone_ref(py)),
        };
        let (span, level) = self.span_and_level(py, line, &text, &meta, &meta_span, &meta_level)?;
        let level = if level.bind(py).is_truthy()? { level } else { stream.label_level.clone_ref(py) };
        // f"{int(ts)}": leading zeros dropped (Loki writes none: its digits as they are, then).
        let digits = entry.timestamp.0.as_bytes();
        let id = if digits.len() > 1 && digits[0] == b'0' {
            line_id_bytes(ts.to_string().as_bytes(), stream.prefix, line.as_bytes())
        } else {
            line_id_bytes(digits, stream.prefix, line.as_bytes())
        };
        let id = ascii_str(py, &id)?;
        let ts: PyObject = ts.into_pyobject(py)?.into_any().unbind();
        let text: PyObject = text.into_any().unbind();
        // Released as `Bound`s (a plain decref): a `Py`'s drop goes through pyo3's GIL check, eight per line.
        let (id, ts, text, level, meta, span) = (id.into_bound(py), ts.into_bound(py), text.into_bound(py),
                                                 level.into_bound(py), meta.into_bound(py), span.into_bound(py));
        let (_meta_span, _meta_level) = (meta_span.into_bound(py), meta_level.into_bound(py));
        build_line(py, &self.line_class, &self.attributes, self.slots.as_ref(),
                   [id.as_unbound(), ts.as_unbound(), text.as_unbound(), &stream.service, level.as_unbound(), &stream.labels,
                    meta.as_unbound(), span.as_unbound()]).map(Some)
    }
}

/// A stream's `values`: null (no entries) or an array of entries, each made into its LogLine on the way.
/// A Python error is kept in `failure` (raised); anything else that stops the read means "Python's answer".
struct Entries<'a, 'py> {
    lines: &'a mut LokiLines,
    py: Python<'py>,
    stream: &'a StreamContext<'a>,
    out: &'a Bound<'py, PyList>,
    failure: &'a mut Option<PyErr>,
}

impl<'de, 'a, 'py> de::DeserializeSeed<'de> for Entries<'a, 'py> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de, 'a, 'py> Visitor<'de> for Entries<'a, 'py> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("null or an array of entries")
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        let mut scratch = std::mem::take(&mut self.lines.line_scratch);
        let read = self.read_all(&mut seq, &mut scratch);
        self.lines.line_scratch = scratch;
        read
    }
}

impl<'a, 'py> Entries<'a, 'py> {
    fn read_all<'de, A: SeqAccess<'de>>(&mut self, seq: &mut A, scratch: &mut String) -> Result<(), A::Error> {
        while let Some(seeded) = seq.next_element_seed(EntrySeed { scratch: &mut *scratch })? {
            let line = match seeded.line {
                Some(line) => line,
                None => scratch.as_str(),
            };
            let entry = Entry { timestamp: seeded.timestamp, line: Text(Cow::Borrowed(line)), metadata: seeded.metadata };
            match self.lines.line(self.py, self.stream, &entry) {
                Ok(Some(line)) => {
                    if let Err(err) = self.out.append(line) {
                        *self.failure = Some(err);
                        return Err(de::Error::custom("python error"));
                    }
                }
                Ok(None) => return Err(de::Error::custom("not read exactly: Python's answer")),
                Err(err) => {
                    *self.failure = Some(err);
                    return Err(de::Error::custom("python error"));
                }
            }
        }
        Ok(())
    }
}

/// `dict(mapping)`: a copy of a dict, else a new dict merged from the mapping's keys (as `dict()` does).
fn dict_of<'py>(py: Python<'py>, mapping: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
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
        Bound::from_owned_ptr_or_err(py, copied)
    }
}

/// `render._logs`: every log line with where it was placed, as the response's `logs` list, or None
/// when Python must render them (lengths differ, a timestamp outside 64 bits, an unknown match).
/// `second_text(seconds)`: the RFC 3339 text of that second (asked once per distinct second).
#[pyfunction]
fn render_logs(py: Python<'_>, lines: &Bound<'_, PyTuple>, places: &Bound<'_, PyTuple>, second_text: &Bound<'_, PyAny>,
               match_values: &Bound<'_, PyDict>, confidence_values: &Bound<'_, PyDict>) -> PyResult<Option<Py<PyList>>> {
    if lines.len() != places.len() {
        return Ok(None);
    }
    let intern = |name: &str| PyString::intern(py, name);
    let (a_id, a_ts, a_service, a_level, a_line, a_labels, a_metadata, a_span, a_match, a_confidence) = (
        intern("id"), intern("timestamp_ns"), intern("service"), intern("level"), intern("line"), intern("labels"),
        intern("metadata"), intern("span_id"), intern("match"), intern("confidence"));
    let (k_timestamp, k_match) = (intern("timestamp"), intern("match"));
    // Consecutive lines mostly share their second: its text is kept, and asked for once per distinct second.
    let mut seconds_text: HashMap<i64, Vec<u8>> = HashMap::new();
    let mut last: Option<(i64, Vec<u8>)> = None;
    let mut stamp: Vec<u8> = Vec::with_capacity(40);
    let out = PyList::empty(py);
    for (line, place) in lines.iter().zip(places.iter()) {
        let ns: i64 = match line.getattr(&a_ts)?.extract() {
            Ok(ns) => ns,
            Err(_) => return Ok(None),
        };
        let (seconds, frac) = (ns.div_euclid(1_000_000_000), ns.rem_euclid(1_000_000_000));
        if last.as_ref().map(|(s, _)| *s) != Some(seconds) {
            let text = match seconds_text.get(&seconds) {
                Some(text) => text.clone(),
                None => {
                    let text: String = second_text.call1((seconds,))?.extract()?;
                    seconds_text.insert(seconds, text.clone().into_bytes());
                    text.into_bytes()
                }
            };
            last = Some((seconds, text));
        }
        // f"{second}.{frac:09d}Z"
        stamp.clear();
        stamp.extend_from_slice(&last.as_ref().expect("set above").1);
        stamp.push(b'.');
        let mut digits = [b'0'; 9];
        let mut rest = frac;
        for digit in digits.iter_mut().rev() {
            *digit = b'0' + (rest % 10) as u8;
            rest /= 10;
        }
        stamp.extend_from_slice(&digits);
        stamp.push(b'Z');
        let timestamp = PyString::new(py, std::str::from_utf8(&stamp).expect("ASCII digits after UTF-8 text"));
        let matched = match match_values.get_item(place.getattr(&a_match)?)? {
            Some(value) => value,
            None => return Ok(None),
        };
        let confidence = place.getattr(&a_confidence)?;
        let confidence = if confidence.is_none() {
            None
        } else {
            match confidence_values.get_item(confidence)? {
                Some(value) => Some(value),
                None => return Ok(None),
            }
        };
        // Sized for its keys up front, as a dict display is (no resize while it fills).
        let entry: Bound<'_, PyDict> = unsafe {
            Bound::from_owned_ptr_or_err(py, ffi::_PyDict_NewPresized(10))?.downcast_into_unchecked()
        };
        entry.set_item(&a_id, line.getattr(&a_id)?)?;
        entry.set_item(&k_timestamp, timestamp)?;
        entry.set_item(&a_service, line.getattr(&a_service)?)?;
        entry.set_item(&a_level, line.getattr(&a_level)?)?;
        entry.set_item(&a_line, line.getattr(&a_line)?)?;
        entry.set_item(&a_labels, dict_of(py, &line.getattr(&a_labels)?)?)?;
        entry.set_item(&a_metadata, dict_of(py, &line.getattr(&a_metadata)?)?)?;
        entry.set_item(&a_span, place.getattr(&a_span)?)?;
        entry.set_item(&k_match, matched)?;
        if let Some(confidence) = confidence {
            entry.set_item(&a_confidence, confidence)?;
        }
        out.append(entry)?;
    }
    Ok(Some(out.unbind()))
}

/// `line_id` for tests: the same ID the Python `_line_id` gives f"{ts}{prefix}{line}".
#[pyfunction]
fn line_id_of(ts: u64, prefix: &str, line: &str) -> String {
    line_id(&ts.to_string(), prefix.as_bytes(), line.as_bytes())
}

#[pymodule]
fn correlator_native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<LokiLines>()?;
    m.add_class::<LokiMemo>()?;
    m.add_class::<otlp::OtlpDecoder>()?;
    m.add_function(wrap_pyfunction!(line_id_of, m)?)?;
    m.add_function(wrap_pyfunction!(render_logs, m)?)?;
    render_spans::register(m)?;
    logs_json::register(m)?;
    exemplars::register(m)?;
    analysis::register(m)?;
    quotes::register(m)?;
    construct::register(m)?;
    critical::register(m)?;
    body_json::register(m)?;
    group::register(m)?;
    fan_out::register(m)?;
    Ok(())
}
