//! The response's `logs` list as the JSON orjson would write for the dicts of `render._logs_python`, without making
//! the dicts (issue 14, P2: at 50k lines the dicts, their serialisation and their freeing were most of the render).
//! The body holds the bytes as an `orjson.Fragment`.
//!
//! The Python code is the reference. Anything unexpected (lengths differ, a timestamp that is not a 64-bit int, a
//! match or confidence not in the tables given, a second's text that is not a str) → `None`, and Python renders the
//! whole list, errors and all. Values other than plain str / int / bool / None, and mappings other than exact dicts
//! with str keys, are written by orjson itself (`dumps`). tests/test_render_logs_native.py compares the bytes with
//! orjson's on every fixture answer, generated lines and the bench's correlation.

use std::collections::HashMap;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyTuple};
use pyo3::wrap_pyfunction;

use crate::json_out::{int64, utf8, write_text, Buf, Field, Spare, Writer};

/// The last lines list's bytes object, written over by the next call when nothing holds it any more.
static SPARE: Spare = Spare::new();

/// `second_text(seconds)` + `.` + nine digits + `Z`, as `rfc3339_ns` writes a time; the second's text asked of
/// Python once per distinct second (a trace's items share a few).
struct Stamps<'a, 'py> {
    second_text: &'a Bound<'py, PyAny>,
    texts: HashMap<i64, Vec<u8>>,
    last_second: Option<i64>,
    stamp: Vec<u8>,
    /// where the second's text ends in `stamp`
    prefix: usize,
}

impl<'a, 'py> Stamps<'a, 'py> {
    fn new(second_text: &'a Bound<'py, PyAny>) -> Self {
        Stamps { second_text, texts: HashMap::new(), last_second: None, stamp: Vec::with_capacity(48), prefix: 0 }
    }

    fn write(&mut self, out: &mut Buf, ns: i64) -> PyResult<bool> {
        let (seconds, frac) = (ns.div_euclid(1_000_000_000), ns.rem_euclid(1_000_000_000));
        if self.last_second != Some(seconds) {
            if !self.texts.contains_key(&seconds) {
                let text = self.second_text.call1((seconds,))?;
                match utf8(&text) {
                    Some(bytes) => self.texts.insert(seconds, bytes.to_vec()),
                    None => return Ok(false),
                };
            }
            self.stamp.clear();
            self.stamp.extend_from_slice(&self.texts[&seconds]);
            self.stamp.push(b'.');
            self.prefix = self.stamp.len();
            self.stamp.extend_from_slice(b"000000000Z");
            self.last_second = Some(seconds);
        }
        let mut rest = frac;
        for digit in self.stamp[self.prefix..self.prefix + 9].iter_mut().rev() {
            *digit = b'0' + (rest % 10) as u8;
            rest /= 10;
        }
        write_text(out, &self.stamp);
        Ok(true)
    }
}

/// JSON written for the last line between two of its values, and the objects it was written from. Objects are
/// compared by address: every one is held by its line (or, for the match's and confidence's values, by the tables)
/// for the whole call, so an equal address is the same object, and the same plain value writes the same bytes.
#[derive(Default)]
struct Piece {
    made_of: Option<[usize; 2]>,
    bytes: Vec<u8>,
}

impl Piece {
    /// Writes the kept bytes when they were made of these objects; else the caller writes them, then `keep`s them.
    fn copy(&mut self, out: &mut Buf, made_of: [usize; 2]) -> bool {
        if self.made_of == Some(made_of) {
            out.extend_from_slice(&self.bytes);
            return true;
        }
        self.made_of = Some(made_of);
        false
    }

    /// Keeps what was written since `start`, made of the objects `copy` was last asked about.
    fn keep(&mut self, out: &Buf, start: usize) {
        self.bytes.clear();
        self.bytes.extend_from_slice(out.written(start));
    }
}

/// `orjson.dumps(render._logs_python(lines, places))` without the dicts, or None when Python must render them.
/// `second_text(seconds)`: the RFC 3339 text of a second; `match_values` / `confidence_values`: the enums' values;
/// `dumps(value)`: orjson with the body's options.
#[pyfunction]
fn render_logs_json<'py>(py: Python<'py>, lines: &Bound<'py, PyTuple>, places: &Bound<'py, PyTuple>,
                         second_text: &Bound<'py, PyAny>, match_values: &Bound<'py, PyDict>,
                         confidence_values: &Bound<'py, PyDict>, dumps: &Bound<'py, PyAny>) -> PyResult<Option<Bound<'py, PyBytes>>> {
    if lines.len() != places.len() {
        return Ok(None);
    }
    let field = |name: &str| Field::new(py, name);
    let (f_id, f_ts, f_service, f_level, f_line, f_labels, f_metadata) = (
        field("id"), field("timestamp_ns"), field("service"), field("level"), field("line"), field("labels"),
        field("metadata"));
    let (f_span, f_match, f_confidence) = (field("span_id"), field("match"), field("confidence"));
    let mut stamps = Stamps::new(second_text);
    let (mut around_line, mut around_span, mut after_span) = (Piece::default(), Piece::default(), Piece::default());
    let mut w = Writer::reusing(&SPARE, lines.len() * 320 + 2, dumps)?;
    w.out.push(b'[');
    for (i, (line, place)) in lines.iter().zip(places.iter()).enumerate() {
        let ns = match int64(&f_ts.get(&line)?) {
            Some(ns) => ns,
            None => return Ok(None),
        };
        let matched = match match_values.get_item(f_match.get(&place)?)? {
            Some(value) => value,
            None => return Ok(None),
        };
        let confidence = f_confidence.get(&place)?;
        let confidence = if confidence.is_none() {
            None
        } else {
            match confidence_values.get_item(confidence)? {
                Some(value) => Some(value),
                None => return Ok(None),
            }
        };
        if i > 0 {
            w.out.push(b',');
        }
        w.key(true, b"id");
        w.value(&f_id.get(&line)?)?;
        w.key(false, b"timestamp");
        if !stamps.write(&mut w.out, ns)? {
            return Ok(None);
        }
        // The pieces between the line's own values, copied from the last line's when they are made of the same
        // objects (a stream's lines share their service, level, labels and metadata; a span's its placement).
        let (service, level) = (f_service.get(&line)?, f_level.get(&line)?);
        let start = w.out.len();
        if !around_line.copy(&mut w.out, [service.as_ptr() as usize, level.as_ptr() as usize]) {
            w.key(false, b"service");
            w.value(&service)?;
            w.key(false, b"level");
            w.value(&level)?;
            w.key(false, b"line");
            around_line.keep(&w.out, start);
        }
        w.value(&f_line.get(&line)?)?;
        let (labels, metadata) = (f_labels.get(&line)?, f_metadata.get(&line)?);
        let start = w.out.len();
        if !around_span.copy(&mut w.out, [labels.as_ptr() as usize, metadata.as_ptr() as usize]) {
            w.key(false, b"labels");
            w.mapping(0, &labels)?;
            w.key(false, b"metadata");
            w.mapping(1, &metadata)?;
            w.key(false, b"span_id");
            around_span.keep(&w.out, start);
        }
        w.value(&f_span.get(&place)?)?;
        let start = w.out.len();
        if !after_span.copy(&mut w.out, [matched.as_ptr() as usize, confidence.as_ref().map_or(0, |c| c.as_ptr() as usize)]) {
            w.key(false, b"match");
            w.value(&matched)?;
            if let Some(confidence) = &confidence {
                w.key(false, b"confidence");
                w.value(confidence)?;
            }
            w.out.push(b'}');
            after_span.keep(&w.out, start);
        }
    }
    w.out.push(b']');
    Ok(Some(w.out.finish_keeping(py, &SPARE)?))
}

/// Adds this module's functions to the extension module (lib.rs calls it).
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(render_logs_json, m)?)?;
    Ok(())
}
