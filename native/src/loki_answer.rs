//! A whole Loki `query_range` answer read in one pass: the envelope, each stream's labels and its entries,
//! the entries made into LogLines as they are read (`LokiLines.answer`).
//!
//! The two-pass way (msgspec splits the envelope, then `LokiLines.stream` reads each stream's `values`
//! again) stays the reference and the fallback: whenever this reader might not read the answer exactly
//! as that way does, it says so (None) and the caller goes that way. That is: the envelope not of the
//! usual shape (not an object, `status`/`data`/`resultType`/`result`/`encodingFlags` of another type,
//! a key twice in one object, `encodingFlags` after `result`, a stream not an object), a skipped value
//! msgspec would refuse (a `\u` escape of a surrogate: serde skips those unchecked), invalid JSON, and
//! whatever `LokiLines.stream` hands back. `status` and `resultType` are checked at the end (before them,
//! lines may have been built for nothing: only for answers that are errors anyway).

use std::fmt;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString, PyTuple};
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use crate::{Entries, LokiLines, StreamContext, Text};

/// What the envelope said, checked once the answer is read.
#[derive(Default)]
struct Envelope {
    status_success: bool,
    data_seen: bool,
    result_seen: bool,
    result_type_streams: bool,
    result_type_seen: bool,
    categorized: bool,
}

/// Why the read stopped: a Python error (raised), or anything else (None: the two-pass way).
struct Reader<'a, 'py> {
    lines: &'a mut LokiLines,
    py: Python<'py>,
    context: &'a Bound<'py, PyAny>,
    out: &'a Bound<'py, PyList>,
    failure: &'a mut Option<PyErr>,
    envelope: &'a mut Envelope,
}

fn bail<E: de::Error>() -> E {
    de::Error::custom("not read exactly: the two-pass way")
}

/// A skipped value serde takes unchecked where msgspec checks: a `\u` escape of a UTF-16 surrogate
/// (msgspec refuses a lone one; a pair is rare enough to go the two-pass way too).
fn skipped_ok(raw: &RawValue) -> bool {
    let s = raw.get().as_bytes();
    let mut from = 0;
    while let Some(i) = memchr::memchr(b'\\', &s[from..]) {
        let at = from + i;
        if s.get(at + 1) == Some(&b'u') && matches!(s.get(at + 2), Some(b'd' | b'D'))
            && matches!(s.get(at + 3), Some(b'8'..=b'9' | b'a'..=b'f' | b'A'..=b'F')) {
            return false;
        }
        from = at + 2; // an escape is two bytes at least: `\\` is skipped whole
    }
    true
}

fn skip<'de, A: MapAccess<'de>>(map: &mut A) -> Result<(), A::Error> {
    let raw: &'de RawValue = map.next_value()?;
    if skipped_ok(raw) {
        Ok(())
    } else {
        Err(bail())
    }
}

fn once<E: de::Error>(seen: &mut bool) -> Result<(), E> {
    if std::mem::replace(seen, true) {
        Err(bail())
    } else {
        Ok(())
    }
}

impl<'de, 'a, 'py> DeserializeSeed<'de> for Reader<'a, 'py> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de, 'a, 'py> Visitor<'de> for Reader<'a, 'py> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a query_range answer")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut status_seen = false;
        while let Some(key) = map.next_key::<Text<'de>>()? {
            match &*key.0 {
                "status" => {
                    once(&mut status_seen)?;
                    let status: Option<Text<'de>> = map.next_value()?;
                    self.envelope.status_success = status.is_some_and(|s| s.0 == "success");
                }
                "data" => {
                    once(&mut self.envelope.data_seen)?;
                    map.next_value_seed(Data {
                        lines: &mut *self.lines, py: self.py, context: self.context, out: self.out,
                        failure: &mut *self.failure, envelope: &mut *self.envelope,
                    })?;
                }
                _ => skip(&mut map)?,
            }
        }
        Ok(())
    }
}

/// `data`: an object (null goes the two-pass way, which says what is wrong).
struct Data<'a, 'py> {
    lines: &'a mut LokiLines,
    py: Python<'py>,
    context: &'a Bound<'py, PyAny>,
    out: &'a Bound<'py, PyList>,
    failure: &'a mut Option<PyErr>,
    envelope: &'a mut Envelope,
}

impl<'de, 'a, 'py> DeserializeSeed<'de> for Data<'a, 'py> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de, 'a, 'py> Visitor<'de> for Data<'a, 'py> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a data object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut flags_seen = false;
        while let Some(key) = map.next_key::<Text<'de>>()? {
            match &*key.0 {
                "resultType" => {
                    once(&mut self.envelope.result_type_seen)?;
                    let kind: Text<'de> = map.next_value()?;
                    self.envelope.result_type_streams = kind.0 == "streams";
                }
                "encodingFlags" => {
                    // The streams are read as they come: their labels' meaning must be known before.
                    if self.envelope.result_seen {
                        return Err(bail());
                    }
                    once(&mut flags_seen)?;
                    let flags: Option<Vec<Text<'de>>> = map.next_value()?;
                    self.envelope.categorized = flags.is_some_and(|f| f.iter().any(|f| f.0 == "categorize-labels"));
                }
                "result" => {
                    once(&mut self.envelope.result_seen)?;
                    map.next_value_seed(Streams {
                        lines: &mut *self.lines, py: self.py, context: self.context, out: self.out,
                        failure: &mut *self.failure, categorized: self.envelope.categorized,
                    })?;
                }
                _ => skip(&mut map)?,
            }
        }
        if !self.envelope.result_type_seen {
            self.envelope.result_type_streams = true; // msgspec's default
        }
        Ok(())
    }
}

/// `data.result`: an array of stream objects.
struct Streams<'a, 'py> {
    lines: &'a mut LokiLines,
    py: Python<'py>,
    context: &'a Bound<'py, PyAny>,
    out: &'a Bound<'py, PyList>,
    failure: &'a mut Option<PyErr>,
    categorized: bool,
}

impl<'de, 'a, 'py> DeserializeSeed<'de> for Streams<'a, 'py> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de, 'a, 'py> Visitor<'de> for Streams<'a, 'py> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of streams")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        loop {
            let stream = OneStream {
                lines: &mut *self.lines, py: self.py, context: self.context, out: self.out,
                failure: &mut *self.failure, categorized: self.categorized,
            };
            if seq.next_element_seed(stream)?.is_none() {
                return Ok(());
            }
        }
    }
}

/// One `{"stream": {labels}, "values": [entries]}`: the labels made into the stream's context by the
/// Python callback, then the entries read straight into LogLines (values before the labels: kept as
/// their bytes and read once the labels are known).
struct OneStream<'a, 'py> {
    lines: &'a mut LokiLines,
    py: Python<'py>,
    context: &'a Bound<'py, PyAny>,
    out: &'a Bound<'py, PyList>,
    failure: &'a mut Option<PyErr>,
    categorized: bool,
}

impl<'de, 'a, 'py> DeserializeSeed<'de> for OneStream<'a, 'py> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'a, 'py> OneStream<'a, 'py> {
    /// The Python callback's context for these labels (their raw JSON): None goes the two-pass way.
    fn context_of(&mut self, labels: &[u8]) -> Result<Option<Owned<'py>>, PyErr> {
        let got = self.context.call1((PyBytes::new(self.py, labels), self.categorized))?;
        if got.is_none() {
            return Ok(None);
        }
        let got = got.downcast_into::<PyTuple>()?;
        let prefix = got.get_item(0)?.downcast_into::<PyString>()?;
        let item = |i: usize| got.get_item(i).map(Bound::unbind);
        let mut memo_prefix = Vec::new();
        if self.lines.memo.is_some() {
            memo_prefix.extend_from_slice(labels);
            memo_prefix.push(0xFF);
            memo_prefix.push(u8::from(self.categorized));
        }
        Ok(Some(Owned {
            memo_prefix,
            prefix,
            service: item(1)?,
            labels: item(2)?,
            label_level: item(3)?,
            default_meta: item(4)?,
            default_span: item(5)?,
            default_level: item(6)?,
        }))
    }

    /// Read `values` (at the deserializer) into the list with `context`.
    fn entries<'de, D: Deserializer<'de>>(&mut self, context: &Owned<'py>, deserializer: D) -> Result<(), D::Error> {
        let prefix = match context.prefix.to_str() {
            Ok(prefix) => prefix,
            Err(_) => return Err(bail()),
        };
        let stream = StreamContext {
            prefix: prefix.as_bytes(),
            service: context.service.clone_ref(self.py),
            labels: context.labels.clone_ref(self.py),
            label_level: context.label_level.clone_ref(self.py),
            default_meta: context.default_meta.clone_ref(self.py),
            default_span: context.default_span.clone_ref(self.py),
            default_level: context.default_level.clone_ref(self.py),
            memo_prefix: &context.memo_prefix,
        };
        let seed = Entries { lines: &mut *self.lines, py: self.py, stream: &stream, out: self.out, failure: &mut *self.failure };
        seed.deserialize(deserializer)
    }
}

/// A stream's context as the callback gave it.
struct Owned<'py> {
    prefix: Bound<'py, PyString>,
    service: PyObject,
    labels: PyObject,
    label_level: PyObject,
    default_meta: PyObject,
    default_span: PyObject,
    default_level: PyObject,
    /// The labels' JSON and whether the answer is categorized: the memo key's head (`LokiLines::line`).
    memo_prefix: Vec<u8>,
}

impl<'de, 'a, 'py> Visitor<'de> for OneStream<'a, 'py> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a stream object")
    }
    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        let (mut stream_seen, mut values_seen) = (false, false);
        let mut context: Option<Owned<'py>> = None;
        let mut deferred: Option<&'de RawValue> = None;
        while let Some(key) = map.next_key::<Text<'de>>()? {
            match &*key.0 {
                "stream" => {
                    once(&mut stream_seen)?;
                    let labels: &'de RawValue = map.next_value()?;
                    context = Some(self.context_or_fail(labels.get().as_bytes())?);
                }
                "values" => {
                    once(&mut values_seen)?;
                    match context.take() {
                        Some(known) => {
                            map.next_value_seed(ValuesSeed { stream: &mut self, context: &known })?;
                            context = Some(known);
                        }
                        None => deferred = Some(map.next_value()?),
                    }
                }
                _ => skip(&mut map)?,
            }
        }
        // Every stream's labels are read (the two-pass way refuses labels orjson refuses, values or not).
        let context = match context {
            Some(context) => context,
            None => self.context_or_fail(b"null")?,
        };
        if let Some(values) = deferred {
            let mut deserializer = serde_json::Deserializer::from_str(values.get());
            self.entries(&context, &mut deserializer).map_err(|_| bail::<A::Error>())?;
        }
        Ok(())
    }
}

impl<'a, 'py> OneStream<'a, 'py> {
    fn context_or_fail<E: de::Error>(&mut self, labels: &[u8]) -> Result<Owned<'py>, E> {
        match self.context_of(labels) {
            Ok(Some(context)) => Ok(context),
            Ok(None) => Err(bail()),
            Err(err) => {
                *self.failure = Some(err);
                Err(de::Error::custom("python error"))
            }
        }
    }
}

/// `values` read in place, with the stream's context already known.
struct ValuesSeed<'s, 'a, 'py> {
    stream: &'s mut OneStream<'a, 'py>,
    context: &'s Owned<'py>,
}

impl<'de, 's, 'a, 'py> DeserializeSeed<'de> for ValuesSeed<'s, 'a, 'py> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        self.stream.entries(self.context, deserializer)
    }
}

/// `LokiLines.answer`: the whole body → its LogLines, or None (the two-pass way).
pub(crate) fn read(lines: &mut LokiLines, py: Python<'_>, body: &[u8], context: &Bound<'_, PyAny>) -> PyResult<Option<Py<PyList>>> {
    let out = PyList::empty(py);
    let mut failure: Option<PyErr> = None;
    let mut envelope = Envelope::default();
    let read = {
        let mut deserializer = serde_json::Deserializer::from_slice(body);
        let reader = Reader { lines, py, context, out: &out, failure: &mut failure, envelope: &mut envelope };
        reader.deserialize(&mut deserializer).and_then(|()| deserializer.end())
    };
    if let Some(err) = failure {
        return Err(err);
    }
    let usual = read.is_ok() && envelope.status_success && envelope.data_seen && envelope.result_seen
        && envelope.result_type_streams;
    Ok(if usual { Some(out.unbind()) } else { None })
}
