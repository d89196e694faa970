//! Many lookups by name in one message, for a consumer that reads a dozen fields of
//! every event (the call tracker).
//!
//! [`Message::get`] compares the wanted name with each header's name in turn: fine for
//! one lookup, but a dozen per event at a busy PBX's rate made those comparisons (and a
//! UTF-8 check per value read) a quarter of the tracker's work. A [`FieldReader`] pays
//! once per message instead: one small key per header name (length, first and last
//! byte, case-folded), placed in a 64-slot hash table on the stack, so a lookup probes
//! a slot or two and reads a name only on a key match; and one UTF-8 check of the whole
//! frame, so a value's text is a slice. The answers are exactly [`Message::get`]'s: the
//! first header of that name.

use std::borrow::Cow;

use super::message::{Field, HeaderSpan, Message};

/// Headers keyed up front; names past this (rare: events with many `ChanVariable`
/// lines) are compared the plain way. Kept on the stack, so a reader never allocates.
const KEYED: usize = 48;

/// Slots of the reader's small hash table of keyed headers: a power of two above
/// [`KEYED`], so there is always an empty slot to end a probe.
const SLOTS: usize = 64;
const _: () = assert!(SLOTS.is_power_of_two() && SLOTS > KEYED && KEYED < 256);

/// A cheap summary of a header name: equal names (ignoring ASCII case) have equal keys.
fn name_key(name: &[u8]) -> u32 {
    let len = u32::try_from(name.len()).unwrap_or(u32::MAX) & 0xffff;
    let first = u32::from(name.first().map_or(0, u8::to_ascii_lowercase));
    let last = u32::from(name.last().map_or(0, u8::to_ascii_lowercase));
    len | first << 16 | last << 24
}

/// Where a key's probe starts: the top bits of a multiplicative hash.
fn home_slot(key: u32) -> usize {
    (key.wrapping_mul(0x9e37_79b9) >> (32 - SLOTS.trailing_zeros())) as usize
}

/// Reads one message's headers by name; see the module documentation.
#[derive(Debug)]
pub struct FieldReader<'a> {
    message: &'a Message,
    /// The whole frame, when it is valid UTF-8 (almost always): values are slices of it.
    text: Option<&'a str>,
    keys: [u32; KEYED],
    /// Open addressing with linear probing over the keyed headers, inserted in header
    /// order: a slot holds a header's index plus one (0 is empty). Headers with equal
    /// keys therefore meet a probe in header order, so the first match is the first
    /// header of that name.
    slots: [u8; SLOTS],
}

impl<'a> FieldReader<'a> {
    pub fn new(message: &'a Message) -> FieldReader<'a> {
        let mut keys = [0; KEYED];
        let mut slots = [0u8; SLOTS];
        for (i, (key, span)) in keys.iter_mut().zip(message.spans()).enumerate() {
            *key = name_key(message.span_bytes(span.name));
            let mut at = home_slot(*key);
            // At most KEYED of the SLOTS are taken, so a free one is always found.
            for _ in 0..SLOTS {
                match slots.get_mut(at) {
                    Some(slot) if *slot == 0 => {
                        *slot = u8::try_from(i + 1).unwrap_or(0);
                        break;
                    }
                    _ => at = (at + 1) & (SLOTS - 1),
                }
            }
        }
        FieldReader {
            message,
            text: std::str::from_utf8(message.frame()).ok(),
            keys,
            slots,
        }
    }

    /// Whether the header at `span` is called `name`: the exact bytes first (Asterisk
    /// writes names as documented, so this nearly always decides), then ignoring case.
    fn is_named(&self, span: &HeaderSpan, name: &[u8]) -> bool {
        let have = self.message.span_bytes(span.name);
        have == name || have.eq_ignore_ascii_case(name)
    }

    /// The span of the first header called `name`.
    fn find(&self, name: &[u8]) -> Option<&'a HeaderSpan> {
        let key = name_key(name);
        let spans = self.message.spans();
        let mut at = home_slot(key);
        // Names are read only where a key matches; an empty slot ends the probe.
        for _ in 0..SLOTS {
            let i = match self.slots.get(at) {
                Some(&slot) if slot > 0 => usize::from(slot - 1),
                _ => break,
            };
            if self.keys.get(i) == Some(&key) {
                if let Some(span) = spans.get(i).filter(|s| self.is_named(s, name)) {
                    return Some(span);
                }
            }
            at = (at + 1) & (SLOTS - 1);
        }
        spans
            .iter()
            .skip(KEYED)
            .find(|span| self.is_named(span, name))
    }

    fn value_text(&self, span: &HeaderSpan) -> Cow<'a, str> {
        // A value starts after `:` and ends before a line end, both ASCII, so the slice
        // always falls on character boundaries; the fallback is for frames that are not
        // UTF-8 (a CP1251 caller name), read field by field.
        let (start, end) = (span.value.0 as usize, span.value.1 as usize);
        match self.text.and_then(|t| t.get(start..end)) {
            Some(text) => Cow::Borrowed(text),
            None => self.message.span_field(span.value).text(),
        }
    }

    /// The first value of `name` (ASCII case-insensitive).
    pub fn get(&self, name: &str) -> Option<Field<'a>> {
        self.find(name.as_bytes())
            .map(|span| self.message.span_field(span.value))
    }

    /// The first value of `name` as (lossy) text.
    pub fn text(&self, name: &str) -> Option<Cow<'a, str>> {
        self.find(name.as_bytes()).map(|span| self.value_text(span))
    }

    /// Every value of `name` as (lossy) text, in order.
    pub fn all_text(&self, name: &str) -> Vec<Cow<'a, str>> {
        let name = name.as_bytes();
        // Most events carry none (`ChanVariable` is asked of every event): the key scan
        // says so without the loop below.
        if self.find(name).is_none() {
            return Vec::new();
        }
        let key = name_key(name);
        let spans = self.message.spans();
        let mut out = Vec::new();
        for (i, span) in spans.iter().enumerate() {
            let maybe = self.keys.get(i).is_none_or(|k| *k == key);
            if maybe && self.is_named(span, name) {
                out.push(self.value_text(span));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ami::codec::{Frame, Limits, decode_all};

    fn message(wire: &[u8]) -> Message {
        match decode_all(wire, Limits::default(), false)
            .into_iter()
            .next()
        {
            Some(Frame::Message(m)) => m,
            other => panic!("not one message: {other:?}"),
        }
    }

    #[test]
    fn answers_exactly_as_message_get_does() {
        let m = message(
            b"Event: Newchannel\r\nChannel: PJSIP/1\r\nContext: x\r\nchannel: second\r\n\
              ChanVariable: A=1\r\nCHANVARIABLE: B=2\r\nEmpty:\r\nNoColon\r\nUniqueid: 1.2\r\n\r\n",
        );
        let r = FieldReader::new(&m);
        for name in [
            "Event",
            "event",
            "Channel",
            "CHANNEL",
            "Context",
            "Chan",
            "Uniqueid",
            "Empty",
            "NoColon",
            "Missing",
            "",
            "ChanVariable",
        ] {
            assert_eq!(r.get(name), m.get(name), "{name}");
            assert_eq!(r.text(name), m.text(name), "{name}");
        }
        assert_eq!(r.text("channel").as_deref(), Some("PJSIP/1"));
        assert_eq!(r.all_text("chanvariable"), ["A=1", "B=2"]);
        assert!(r.all_text("Nothing").is_empty());
    }

    #[test]
    fn names_with_equal_keys_are_told_apart_and_the_first_wins() {
        // "Cabcdel", "Channel" and "Cxl…l"-shaped names share length, first and last
        // byte, so they share a key and a probe chain.
        let m = message(
            b"Event: X\r\nCabcdel: 1\r\nChannel: 2\r\ncHANNEL: 3\r\nCzzzzzl: 4\r\nChannel: 5\r\n\r\n",
        );
        let r = FieldReader::new(&m);
        for name in ["Cabcdel", "Channel", "CHANNEL", "Czzzzzl", "Cyyyyyl"] {
            assert_eq!(r.get(name), m.get(name), "{name}");
        }
        assert_eq!(r.text("channel").as_deref(), Some("2"));
        assert_eq!(r.all_text("Channel"), ["2", "3", "5"]);
    }

    #[test]
    fn names_past_the_keyed_ones_are_still_found() {
        let mut wire = b"Event: VarSet\r\n".to_vec();
        for i in 0..(KEYED + 10) {
            wire.extend_from_slice(format!("ChanVariable: V{i}=x\r\n").as_bytes());
        }
        wire.extend_from_slice(b"Uniqueid: late\r\n\r\n");
        let m = message(&wire);
        let r = FieldReader::new(&m);
        assert_eq!(r.text("Uniqueid").as_deref(), Some("late"));
        assert_eq!(r.all_text("ChanVariable").len(), KEYED + 10);
        assert_eq!(
            r.all_text("ChanVariable").last().map(|v| v.as_ref()),
            Some("V57=x")
        );
    }

    #[test]
    fn a_frame_that_is_not_utf8_reads_field_by_field() {
        let m =
            message(b"Event: Newchannel\r\nCallerIDName: \xcf\xe5\xf2\xf0\r\nExten: 100\r\n\r\n");
        let r = FieldReader::new(&m);
        assert_eq!(r.text("Exten").as_deref(), Some("100"));
        assert_eq!(r.text("CallerIDName"), m.text("CallerIDName"));
        assert_eq!(
            r.get("CallerIDName").map(Field::as_bytes),
            Some(&b"\xcf\xe5\xf2\xf0"[..])
        );
        let cyrillic = Message::from_pairs(&[("CallerIDName", "Пётр"), ("X", "y")]);
        assert_eq!(
            FieldReader::new(&cyrillic).text("callerIDname").as_deref(),
            Some("Пётр")
        );
    }
}
