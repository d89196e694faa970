//! The AMI message grammar, parsed with `nom` from one complete frame that
//! [`super::codec`] has already cut out of the stream.
//!
//! Owns the meaning of a frame's bytes: lines, `Name: value` headers, and the legacy
//! `Response: Follows` body. It never sees a partial message (that is the framer's job),
//! never allocates a copy of a value (values are slices of the frame) and never rejects a
//! line it does not understand: a line without `:` is a header with an empty value.

use bytes::Bytes;
use nom::bytes::complete::{tag, take_till};
use nom::character::complete::char;
use nom::combinator::opt;
use nom::multi::many0;
use nom::sequence::terminated;
use nom::{IResult, Input, Parser};

use super::message::{END_COMMAND, HeaderSpan, Message, offsets};

/// Why a frame could not be read as a message. The framer only hands over frames made
/// of whole lines, so this means a framing bug, not bad peer data.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    #[error("AMI frame has {0} bytes after its last line end")]
    TrailingBytes(usize),
}

/// `line = *(any byte but LF) LF`; one CR before the LF is not part of the line.
fn line(input: &[u8]) -> IResult<&[u8], &[u8]> {
    let (rest, text) = terminated(take_till(|b| b == b'\n'), tag(&b"\n"[..])).parse(input)?;
    Ok((rest, text.strip_suffix(b"\r").unwrap_or(text)))
}

/// `name = *(any byte but ":")`: `take_till` with a vectorised search, since this runs
/// on every line of every message.
fn name(input: &[u8]) -> IResult<&[u8], &[u8]> {
    let end = memchr::memchr(b':', input).unwrap_or(input.len());
    Ok(input.take_split(end))
}

/// `header = name [":" [SP] value]`, `name = *(any byte but ":")`, `value = *any byte`.
/// Values may themselves contain `:`; only the first one splits.
fn header(input: &[u8]) -> IResult<&[u8], (&[u8], &[u8])> {
    let (input, name) = name(input)?;
    // `char` rather than a one-byte `tag`: this runs twice on every line of every message,
    // and a tag's generic compare cost several times a byte test.
    let (input, colon) = opt(char(':')).parse(input)?;
    if colon.is_none() {
        return Ok((input, (name, b"")));
    }
    let (value, _) = opt(char(' ')).parse(input)?;
    Ok((b"", (name, value)))
}

/// Where the header on `line` lies in its frame, `line` starting `at` bytes into it:
/// the framer's path, which knows where each line starts and so needs no pointer
/// arithmetic (the same spans as [`header_span`]).
pub(crate) fn header_span_at(line: &[u8], at: usize) -> HeaderSpan {
    let (name, value) = match header(line) {
        Ok((_, pair)) => pair,
        Err(_) => (line, &b""[..]),
    };
    // Frames are bounded far below 4 GiB (`Limits`); past that a span would read as
    // empty rather than wrap.
    let offset = |n: usize| u32::try_from(at.saturating_add(n)).unwrap_or(u32::MAX);
    let value_start = line.len().saturating_sub(value.len());
    HeaderSpan {
        name: (offset(0), offset(name.len())),
        value: (offset(value_start), offset(line.len())),
    }
}

/// Where the header on `line` (a sub-slice of `frame`) lies in the frame.
pub(crate) fn header_span(frame: &[u8], line: &[u8]) -> HeaderSpan {
    // `header` is total on any line (every branch succeeds), so the error arm is unreachable
    // in practice; it still keeps the whole line rather than lose it.
    let (name, value) = match header(line) {
        Ok((_, pair)) => pair,
        Err(_) => (line, &b""[..]),
    };
    HeaderSpan::within(frame, name, value)
}

/// Headers a legacy `Response: Follows` reply puts before its raw output.
const FOLLOWS_HEADERS: [&str; 3] = ["Response", "Privilege", "ActionID"];

/// Whether a frame's first line starts the legacy `Command` form, whose body may hold
/// empty lines and ends at `--END COMMAND--` instead.
pub fn is_follows_line(line: &[u8]) -> bool {
    // Every message's first line comes here; nearly all are `Event:` lines.
    if !line
        .get(..8)
        .is_some_and(|p| p.eq_ignore_ascii_case(b"Response"))
    {
        return false;
    }
    match header(line) {
        Ok((_, (name, value))) => {
            name.eq_ignore_ascii_case(b"Response")
                && value.eq_ignore_ascii_case(b"Follows")
                && line.contains(&b':')
        }
        Err(_) => false,
    }
}

/// Parses a complete frame: whole lines, each ending in LF, without the empty line that
/// ended the message.
///
/// # Errors
/// [`ParseError::TrailingBytes`] when the frame does not end with a line end.
pub fn parse_frame(frame: &Bytes) -> Result<Message, ParseError> {
    let lines = match many0(line).parse(frame.as_ref()) {
        Ok((b"", lines)) => lines,
        Ok((rest, _)) => return Err(ParseError::TrailingBytes(rest.len())),
        Err(_) => return Err(ParseError::TrailingBytes(frame.len())),
    };
    let follows = lines.first().is_some_and(|l| is_follows_line(l));
    if !follows {
        let headers = lines.iter().map(|l| header_span(frame, l)).collect();
        return Ok(Message::from_spans(frame.clone(), headers));
    }
    let mut headers = Vec::new();
    let mut output = Vec::new();
    let mut in_headers = true;
    for l in lines {
        // Output without a final newline runs straight into the marker: what precedes
        // it on its line is one more line of the reply.
        let (content, end) = match l.strip_suffix(END_COMMAND) {
            Some(before) => (before, true),
            None => (l, false),
        };
        if end && content.is_empty() {
            break;
        }
        if in_headers {
            let is_follows_header = match header(content) {
                Ok((_, (name, _))) => FOLLOWS_HEADERS
                    .iter()
                    .any(|n| name.eq_ignore_ascii_case(n.as_bytes())),
                Err(_) => false,
            };
            if is_follows_header && content.contains(&b':') {
                headers.push(header_span(frame, content));
                if end {
                    break;
                }
                continue;
            }
            in_headers = false;
        }
        output.push(offsets(frame, content));
        if end {
            break;
        }
    }
    Ok(Message::legacy_from_spans(frame.clone(), headers, output))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &[u8]) -> Message {
        parse_frame(&Bytes::copy_from_slice(s)).unwrap()
    }

    #[test]
    fn values_keep_colons_and_names_keep_odd_characters() {
        let m = parse(b"Event: X\r\nX-Header_2.b: a: b:c\r\nEmpty:\r\nNoColon\r\n");
        let h: Vec<_> = m.headers().collect();
        assert_eq!(h[1].name.text(), "X-Header_2.b");
        assert_eq!(h[1].value.text(), "a: b:c");
        assert_eq!(h[2].value.text(), "");
        assert_eq!(h[3].name.text(), "NoColon");
    }

    #[test]
    fn only_one_space_after_the_colon_is_dropped() {
        let m = parse(b"Output:   indented\n");
        assert_eq!(m.get("Output").unwrap().text(), "  indented");
    }

    #[test]
    fn a_frame_without_a_final_line_end_is_a_framing_error() {
        assert_eq!(
            parse_frame(&Bytes::from_static(b"Event: X\r\nTail")),
            Err(ParseError::TrailingBytes(4))
        );
    }
}
