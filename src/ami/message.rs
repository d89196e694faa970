//! One AMI message as it came off the wire: an ordered list of `Name: value` headers,
//! plus, for the legacy `Response: Follows` form of `Command`, the raw output lines.
//!
//! Owns the in-memory shape of a message and how it is written back to bytes. It never
//! decodes text destructively: every name and value keeps its exact bytes, with a lossy
//! UTF-8 view for reading. It must never do I/O or know what any header means beyond the
//! few the protocol itself defines (`Response`, `Event`, `ActionID`, `EventList`, `Output`).

use std::borrow::Cow;
use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};

/// A header name or value: the exact bytes from the wire, readable as text.
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

    /// The text, with invalid UTF-8 replaced by U+FFFD; borrowed when the bytes are UTF-8.
    pub fn text(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.0)
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
        match self.as_str() {
            Some(s) => fmt::Debug::fmt(s, f),
            None => write!(f, "bytes{:?}", self.text()),
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text())
    }
}

/// One `Name: value` line.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Header {
    pub name: Value,
    pub value: Value,
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
/// lines of a legacy `Response: Follows` command reply.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct Message {
    headers: Vec<Header>,
    legacy_output: Option<Vec<Value>>,
}

/// The line that ends a legacy `Response: Follows` command reply.
pub const END_COMMAND: &[u8] = b"--END COMMAND--";

impl Message {
    /// A message from headers in order.
    pub fn new(headers: Vec<Header>) -> Message {
        Message {
            headers,
            legacy_output: None,
        }
    }

    /// A legacy `Response: Follows` message: `headers` then raw `output` lines.
    pub fn legacy_follows(headers: Vec<Header>, output: Vec<Value>) -> Message {
        Message {
            headers,
            legacy_output: Some(output),
        }
    }

    /// Every header, in wire order.
    pub fn headers(&self) -> &[Header] {
        &self.headers
    }

    /// The first value of `name` (ASCII case-insensitive).
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_case(name))
            .map(|h| &h.value)
    }

    /// The first value of `name` as (lossy) text.
    pub fn text(&self, name: &str) -> Option<Cow<'_, str>> {
        self.get(name).map(Value::text)
    }

    /// Whether the first `name` header equals `value`, both ignoring ASCII case.
    pub fn is(&self, name: &str, value: &str) -> bool {
        self.get(name).is_some_and(|v| v.eq_ignore_case(value))
    }

    /// Every value of `name`, in order (`ChanVariable`, `Output`, `Variable`…).
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
        self.headers
            .iter()
            .filter(move |h| h.name.eq_ignore_case(name))
            .map(|h| &h.value)
    }

    pub fn kind(&self) -> MessageKind {
        match self.headers.first() {
            Some(h) if h.name.eq_ignore_case("Response") => MessageKind::Response,
            Some(h) if h.name.eq_ignore_case("Event") => MessageKind::Event,
            _ => MessageKind::Other,
        }
    }

    /// The `Event` name, for events.
    pub fn event(&self) -> Option<&Value> {
        match self.kind() {
            MessageKind::Event => self.get("Event"),
            _ => None,
        }
    }

    /// The `Response` value (`Success`, `Error`, `Follows`, `Goodbye`…), for responses.
    pub fn response(&self) -> Option<&Value> {
        match self.kind() {
            MessageKind::Response => self.get("Response"),
            _ => None,
        }
    }

    pub fn action_id(&self) -> Option<&Value> {
        self.get("ActionID")
    }

    /// The raw lines of a legacy `Response: Follows` reply, if this is one.
    pub fn legacy_output(&self) -> Option<&[Value]> {
        self.legacy_output.as_deref()
    }

    /// Command output as lines: the legacy raw lines, or every modern `Output:` header.
    pub fn output_lines(&self) -> Vec<Cow<'_, str>> {
        match &self.legacy_output {
            Some(lines) => lines.iter().map(Value::text).collect(),
            None => self.all("Output").map(Value::text).collect(),
        }
    }

    /// Appends the message's wire form, terminating empty line included. Names and
    /// values are written as they are: this is for messages that came from a parser (or
    /// tests), never for values from users — actions are built by [`super::action`].
    pub fn write_to(&self, out: &mut BytesMut) {
        let Some(lines) = &self.legacy_output else {
            for h in &self.headers {
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
                .headers
                .last()
                .is_some_and(|h| h.value.as_bytes().ends_with(END_COMMAND)),
        };
        let header_count = self.headers.len();
        for (i, h) in self.headers.iter().enumerate() {
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

fn write_header(out: &mut BytesMut, h: &Header) {
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
        let m = Message::new(vec![
            Header {
                name: "Event".into(),
                value: "Newchannel".into(),
            },
            Header {
                name: "ChanVariable".into(),
                value: "A=1".into(),
            },
            Header {
                name: "chanvariable".into(),
                value: "B=2".into(),
            },
        ]);
        assert_eq!(m.kind(), MessageKind::Event);
        assert!(m.is("EVENT", "newchannel"));
        let vars: Vec<_> = m.all("ChanVariable").map(|v| v.text()).collect();
        assert_eq!(vars, ["A=1", "B=2"]);
    }
}
