//! One AMI message as it came off the wire: an ordered list of `Name: value` headers,
//! plus, for the legacy `Response: Follows` form of `Command`, the raw output lines.
//!
//! Owns the in-memory shape of a message and how it is written back to bytes. A message
//! is its frame (the bytes as received, shared, never copied) and an index of where each
//! name and value lies in it: one allocation per message however many headers it has,
//! and lookups that borrow. It never decodes text destructively: every name and value
//! keeps its exact bytes, with a lossy UTF-8 view for reading. It must never do I/O or
//! know what any header means beyond the few the protocol itself defines (`Response`,
//! `Event`, `ActionID`, `EventList`, `Output`).

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;

use bytes::{BufMut, Bytes, BytesMut};

/// An owned header name or value: the exact bytes from the wire, readable as text.
///
/// AMI carries caller names in whatever encoding the phone sent (CP1251, truncated
/// UTF-8…); the bytes are kept so nothing is lost, and [`Value::text`] gives a lossy view.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct Value(Bytes);

impl Value {
    /// Wraps bytes taken from a frame (no copy).
    pub fn from_bytes(bytes: Bytes) -> Value {
        Value(bytes)
    }

    /// The exact bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// A borrowed view, with the same readers as [`Field`].
    pub fn as_field(&self) -> Field<'_> {
        Field(&self.0)
    }

    /// The text, with invalid UTF-8 replaced by U+FFFD; borrowed when the bytes are UTF-8.
    pub fn text(&self) -> Cow<'_, str> {
        lossy(&self.0)
    }

    /// The text when the bytes are valid UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.0).ok()
    }

    /// Whether the bytes equal `s`, ignoring ASCII case.
    pub fn eq_ignore_case(&self, s: &str) -> bool {
        self.0.eq_ignore_ascii_case(s.as_bytes())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value(Bytes::copy_from_slice(s.as_bytes()))
    }
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.as_field(), f)
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text())
    }
}

/// `String::from_utf8_lossy`, with the common case first: validating valid UTF-8 with
/// `str::from_utf8` costs a fraction of the lossy decoder's walk, and this runs for every
/// field the call tracker reads.
fn lossy(bytes: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(text) => Cow::Borrowed(text),
        Err(_) => String::from_utf8_lossy(bytes),
    }
}

/// A header name or value borrowed from a [`Message`]: the exact bytes, readable as text.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Field<'a>(&'a [u8]);

impl<'a> Field<'a> {
    /// The exact bytes.
    pub fn as_bytes(self) -> &'a [u8] {
        self.0
    }

    /// The text, with invalid UTF-8 replaced by U+FFFD; borrowed when the bytes are UTF-8.
    pub fn text(self) -> Cow<'a, str> {
        lossy(self.0)
    }

    /// The text when the bytes are valid UTF-8.
    pub fn as_str(self) -> Option<&'a str> {
        std::str::from_utf8(self.0).ok()
    }

    /// Whether the bytes equal `s`, ignoring ASCII case.
    pub fn eq_ignore_case(self, s: &str) -> bool {
        self.0.eq_ignore_ascii_case(s.as_bytes())
    }

    pub fn is_empty(self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Field<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.as_str() {
            Some(s) => fmt::Debug::fmt(s, f),
            None => write!(f, "bytes{:?}", self.text()),
        }
    }
}

impl fmt::Display for Field<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text())
    }
}

/// One `Name: value` line, borrowed from its message.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Header<'a> {
    pub name: Field<'a>,
    pub value: Field<'a>,
}

/// Where one header lies in its frame. Offsets are `u32`: the framer bounds a message
/// far below 4 GiB ([`super::codec::Limits`]).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct HeaderSpan {
    pub name: (u32, u32),
    pub value: (u32, u32),
}

impl HeaderSpan {
    /// The span of `name` and `value`, both sub-slices of `frame`.
    pub(crate) fn within(frame: &[u8], name: &[u8], value: &[u8]) -> HeaderSpan {
        HeaderSpan {
            name: offsets(frame, name),
            value: offsets(frame, value),
        }
    }
}

/// `part`'s position inside `whole`, which must contain it (else an empty span at 0).
pub(crate) fn offsets(whole: &[u8], part: &[u8]) -> (u32, u32) {
    let start = (part.as_ptr() as usize).wrapping_sub(whole.as_ptr() as usize);
    let end = start.wrapping_add(part.len());
    match (u32::try_from(start), u32::try_from(end)) {
        (Ok(s), Ok(e)) if end <= whole.len() => (s, e),
        _ => (0, 0),
    }
}

fn range((start, end): (u32, u32)) -> Range<usize> {
    start as usize..end as usize
}

/// What a message is, from its first header.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum MessageKind {
    /// `Response: …`: the answer to an action.
    Response,
    /// `Event: …`: something that happened.
    Event,
    /// Anything else (an `Action:` echoed by a peer, or an unknown shape).
    Other,
}

/// An AMI message: headers in wire order (repeated names kept), and the raw output
/// lines of a legacy `Response: Follows` command reply. Two messages are equal when
/// their headers and output lines are, whatever line ends their frames used.
#[derive(Clone, Default)]
pub struct Message {
    frame: Bytes,
    headers: Vec<HeaderSpan>,
    legacy_output: Option<Vec<(u32, u32)>>,
}

/// The line that ends a legacy `Response: Follows` command reply.
pub const END_COMMAND: &[u8] = b"--END COMMAND--";

impl Message {
    /// A message indexed over `frame` (from the framer or the parser).
    pub(crate) fn from_spans(frame: Bytes, headers: Vec<HeaderSpan>) -> Message {
        Message {
            frame,
            headers,
            legacy_output: None,
        }
    }

    /// A legacy `Response: Follows` message over `frame`: headers then raw output lines.
    pub(crate) fn legacy_from_spans(
        frame: Bytes,
        headers: Vec<HeaderSpan>,
        output: Vec<(u32, u32)>,
    ) -> Message {
        Message {
            frame,
            headers,
            legacy_output: Some(output),
        }
    }

    /// A message from `(name, value)` pairs in order (tests, fake peers).
    pub fn from_pairs(pairs: &[(&str, &str)]) -> Message {
        let mut frame = BytesMut::new();
        let mut spans = Vec::with_capacity(pairs.len());
        for (name, value) in pairs {
            let at = |len: usize| u32::try_from(len).unwrap_or(u32::MAX);
            let name_start = at(frame.len());
            frame.put_slice(name.as_bytes());
            let name_end = at(frame.len());
            frame.put_slice(b": ");
            let value_start = at(frame.len());
            frame.put_slice(value.as_bytes());
            spans.push(HeaderSpan {
                name: (name_start, name_end),
                value: (value_start, at(frame.len())),
            });
            frame.put_slice(b"\r\n");
        }
        Message::from_spans(frame.freeze(), spans)
    }

    /// The frame as received (without the empty line that ended it).
    pub fn frame(&self) -> &Bytes {
        &self.frame
    }

    fn field(&self, span: (u32, u32)) -> Field<'_> {
        Field(self.frame.get(range(span)).unwrap_or_default())
    }

    /// The header index, for [`super::reader::FieldReader`].
    pub(crate) fn spans(&self) -> &[HeaderSpan] {
        &self.headers
    }

    pub(crate) fn span_field(&self, span: (u32, u32)) -> Field<'_> {
        self.field(span)
    }

    pub(crate) fn span_bytes(&self, span: (u32, u32)) -> &[u8] {
        self.field(span).0
    }

    /// A reader for many lookups by name in this message.
    pub fn reader(&self) -> super::reader::FieldReader<'_> {
        super::reader::FieldReader::new(self)
    }

    fn header(&self, span: &HeaderSpan) -> Header<'_> {
        Header {
            name: self.field(span.name),
            value: self.field(span.value),
        }
    }

    /// Every header, in wire order.
    pub fn headers(&self) -> impl ExactSizeIterator<Item = Header<'_>> + '_ {
        self.headers.iter().map(|s| self.header(s))
    }

    /// How many headers the message has.
    pub fn header_count(&self) -> usize {
        self.headers.len()
    }

    /// The first value of `name` (ASCII case-insensitive).
    pub fn get(&self, name: &str) -> Option<Field<'_>> {
        let name = name.as_bytes();
        self.headers
            .iter()
            .find(|s| {
                // Lengths first: most names are rejected without reading a byte.
                s.name.1.saturating_sub(s.name.0) as usize == name.len()
                    && self.field(s.name).0.eq_ignore_ascii_case(name)
            })
            .map(|s| self.field(s.value))
    }

    /// The first value of `name` as (lossy) text.
    pub fn text(&self, name: &str) -> Option<Cow<'_, str>> {
        self.get(name).map(Field::text)
    }

    /// Whether the first `name` header equals `value`, both ignoring ASCII case.
    pub fn is(&self, name: &str, value: &str) -> bool {
        self.get(name).is_some_and(|v| v.eq_ignore_case(value))
    }

    /// Every value of `name`, in order (`ChanVariable`, `Output`, `Variable`…).
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = Field<'a>> + 'a {
        self.headers()
            .filter(move |h| h.name.eq_ignore_case(name))
            .map(|h| h.value)
    }

    pub fn kind(&self) -> MessageKind {
        match self.headers.first().map(|s| self.field(s.name)) {
            Some(n) if n.eq_ignore_case("Response") => MessageKind::Response,
            Some(n) if n.eq_ignore_case("Event") => MessageKind::Event,
            _ => MessageKind::Other,
        }
    }

    /// The `Event` name, for events (the first header).
    pub fn event(&self) -> Option<Field<'_>> {
        match self.kind() {
            MessageKind::Event => self.headers.first().map(|s| self.field(s.value)),
            _ => None,
        }
    }

    /// The `Response` value (`Success`, `Error`, `Follows`, `Goodbye`…), for responses.
    pub fn response(&self) -> Option<Field<'_>> {
        match self.kind() {
            MessageKind::Response => self.headers.first().map(|s| self.field(s.value)),
            _ => None,
        }
    }

    pub fn action_id(&self) -> Option<Field<'_>> {
        self.get("ActionID")
    }

    /// The raw lines of a legacy `Response: Follows` reply, if this is one.
    pub fn legacy_output(&self) -> Option<Vec<Field<'_>>> {
        self.legacy_output
            .as_ref()
            .map(|lines| lines.iter().map(|&l| self.field(l)).collect())
    }

    /// Command output as lines: the legacy raw lines, or every modern `Output:` header.
    pub fn output_lines(&self) -> Vec<Cow<'_, str>> {
        match &self.legacy_output {
            Some(lines) => lines.iter().map(|&l| self.field(l).text()).collect(),
            None => self.all("Output").map(Field::text).collect(),
        }
    }

    /// Appends the message's wire form, terminating empty line included. Names and
    /// values are written as they are: this is for messages that came from a parser (or
    /// tests), never for values from users — actions are built by [`super::action`].
    pub fn write_to(&self, out: &mut BytesMut) {
        let Some(lines) = self.legacy_output() else {
            for h in self.headers() {
                write_header(out, h);
            }
            out.put_slice(b"\r\n");
            return;
        };
        // In the legacy form the first line ending in the marker ends the message, so a
        // last line that itself ends in the marker is written joined to it (as it came).
        let joined = match lines.last() {
            Some(last) => last.as_bytes().ends_with(END_COMMAND),
            None => self
                .headers()
                .last()
                .is_some_and(|h| h.value.as_bytes().ends_with(END_COMMAND)),
        };
        let header_count = self.headers.len();
        for (i, h) in self.headers().enumerate() {
            if joined && lines.is_empty() && i + 1 == header_count {
                out.put_slice(h.name.as_bytes());
                out.put_slice(b": ");
                out.put_slice(h.value.as_bytes());
            } else {
                write_header(out, h);
            }
        }
        for (i, line) in lines.iter().enumerate() {
            out.put_slice(line.as_bytes());
            if !(joined && i + 1 == lines.len()) {
                out.put_slice(b"\r\n");
            }
        }
        out.put_slice(END_COMMAND);
        out.put_slice(b"\r\n\r\n");
    }

    /// The wire form as bytes.
    pub fn to_bytes(&self) -> Bytes {
        let mut out = BytesMut::new();
        self.write_to(&mut out);
        out.freeze()
    }
}

impl PartialEq for Message {
    fn eq(&self, other: &Message) -> bool {
        self.headers().eq(other.headers()) && self.legacy_output() == other.legacy_output()
    }
}

impl Eq for Message {}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Message");
        d.field(
            "headers",
            &self
                .headers()
                .map(|h| (h.name, h.value))
                .collect::<Vec<_>>(),
        );
        if let Some(lines) = self.legacy_output() {
            d.field("legacy_output", &lines);
        }
        d.finish()
    }
}

fn write_header(out: &mut BytesMut, h: Header<'_>) {
    out.put_slice(h.name.as_bytes());
    out.put_slice(b": ");
    out.put_slice(h.value.as_bytes());
    out.put_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_utf8_values_keep_their_bytes_and_show_lossy_text() {
        let v = Value::from_bytes(Bytes::from_static(b"\xcf\xe5\xf2\xf0"));
        assert_eq!(v.as_bytes(), b"\xcf\xe5\xf2\xf0");
        assert_eq!(v.as_str(), None);
        assert_eq!(v.text(), "\u{fffd}\u{fffd}\u{fffd}\u{fffd}");
    }

    #[test]
    fn lookups_ignore_ascii_case_and_keep_repeats_in_order() {
        let m = Message::from_pairs(&[
            ("Event", "Newchannel"),
            ("ChanVariable", "A=1"),
            ("chanvariable", "B=2"),
        ]);
        assert_eq!(m.kind(), MessageKind::Event);
        assert!(m.is("EVENT", "newchannel"));
        assert_eq!(m.event().unwrap().text(), "Newchannel");
        let vars: Vec<_> = m.all("ChanVariable").map(|v| v.text()).collect();
        assert_eq!(vars, ["A=1", "B=2"]);
        assert_eq!(m.get("Chan"), None);
    }

    #[test]
    fn equal_messages_compare_by_headers_not_by_line_ends() {
        let a = Message::from_pairs(&[("Event", "X"), ("A", "1")]);
        let b = Message::from_pairs(&[("Event", "X"), ("A", "1")]);
        let c = Message::from_pairs(&[("Event", "X"), ("A", "2")]);
        assert_eq!(a, b);
        assert_ne!(a, c);
    }
}
