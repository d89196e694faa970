//! The AMI stream framer: a `tokio_util` [`Decoder`] that cuts the byte stream into the
//! banner and whole messages, and an [`Encoder`] that writes actions.
//!
//! Owns where a message ends (an empty line, with CRLF or bare LF line ends; for the
//! legacy `Response: Follows` form, the `--END COMMAND--` line) and the size bounds.
//! It remembers how far it has scanned, so each byte is looked at once however the
//! message is split across reads. A message over the byte or header limit is dropped as
//! it streams in (memory stays bounded) and reported as [`Frame::Skipped`]; the stream
//! then resynchronises on the next message. It never panics on any input, never
//! interprets headers beyond spotting the legacy form, and never does I/O itself.

use bytes::{Buf, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use super::action::Action;
use super::message::{END_COMMAND, HeaderSpan, Message, Value};
use super::parser::{self, ParseError};

/// Bounds on one incoming message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest message, in bytes, line ends included.
    pub max_message_bytes: usize,
    /// Most lines (headers or legacy output lines) in one message.
    pub max_headers: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_message_bytes: 1024 * 1024,
            max_headers: 20_000,
        }
    }
}

/// One item of the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// The first line: `Asterisk Call Manager/11.0.0`.
    Banner(Value),
    Message(Message),
    /// A message that was dropped; the stream continues after it.
    Skipped(Skipped),
}

/// Why a message was dropped, and how many bytes went with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub reason: SkipReason,
    pub bytes: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SkipReason {
    #[error("message larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("message with more than {limit} lines")]
    TooManyHeaders { limit: usize },
    #[error("malformed frame: {0}")]
    Malformed(ParseError),
}

/// Errors of the AMI stream itself (the transport); bad data is never an error.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("AMI socket: {0}")]
    Io(#[from] std::io::Error),
}

/// How much of an over-limit line is kept while it is being dropped: enough to see
/// `--END COMMAND--` and tell an empty line from a non-empty one.
const DISCARD_TAIL: usize = 32;

#[derive(Debug)]
struct Discard {
    reason: SkipReason,
    bytes: usize,
    follows: bool,
    /// The part of the current line already dropped held something other than CR.
    dropped_content: bool,
}

/// The AMI framer. See the module documentation.
#[derive(Debug)]
pub struct AmiCodec {
    limits: Limits,
    expect_banner: bool,
    /// `buf[..scan]` has been searched for line ends.
    scan: usize,
    /// Where the current, unfinished line of the current frame starts.
    line_start: usize,
    /// Lines of the current frame so far.
    lines: usize,
    follows: bool,
    /// The current frame's headers, indexed as its lines are found (so the frame is
    /// never scanned twice); unused for the legacy form, which the parser reads whole.
    spans: Vec<HeaderSpan>,
    discard: Option<Discard>,
    skipped: u64,
}

fn find_lf(bytes: &[u8]) -> Option<usize> {
    memchr::memchr(b'\n', bytes)
}

fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

impl AmiCodec {
    /// A codec for a client connection: the first line is the banner.
    pub fn new(limits: Limits) -> AmiCodec {
        AmiCodec {
            limits,
            expect_banner: true,
            scan: 0,
            line_start: 0,
            lines: 0,
            follows: false,
            spans: Vec::new(),
            discard: None,
            skipped: 0,
        }
    }

    /// A codec for a stream with no banner (a peer's side, a capture without one).
    pub fn without_banner(limits: Limits) -> AmiCodec {
        AmiCodec {
            expect_banner: false,
            ..AmiCodec::new(limits)
        }
    }

    /// Messages dropped so far (over a limit, or malformed).
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    fn reset_frame(&mut self) {
        self.scan = 0;
        self.line_start = 0;
        self.lines = 0;
        self.follows = false;
        self.spans.clear();
    }

    /// Drops the scanned complete lines of the current frame and switches to discarding
    /// the rest of it.
    fn start_discard(&mut self, buf: &mut BytesMut, reason: SkipReason) {
        let dropped = self.line_start.min(buf.len());
        buf.advance(dropped);
        self.discard = Some(Discard {
            reason,
            bytes: dropped,
            follows: self.follows,
            dropped_content: false,
        });
        self.reset_frame();
    }

    fn discard_step(&mut self, buf: &mut BytesMut) -> Option<Frame> {
        let d = self.discard.as_mut()?;
        while let Some(off) = buf.get(self.scan..).and_then(find_lf) {
            let lf = self.scan + off;
            let line = strip_cr(buf.get(..lf).unwrap_or_default());
            let empty = !d.dropped_content && line.is_empty();
            let end = if d.follows {
                line.ends_with(END_COMMAND)
            } else {
                empty
            };
            d.bytes += lf + 1;
            d.dropped_content = false;
            buf.advance(lf + 1);
            self.scan = 0;
            if end {
                let skipped = Skipped {
                    reason: d.reason.clone(),
                    bytes: d.bytes,
                };
                self.discard = None;
                self.skipped += 1;
                return Some(Frame::Skipped(skipped));
            }
        }
        if buf.len() > 2 * DISCARD_TAIL {
            let drop = buf.len() - DISCARD_TAIL;
            if buf
                .get(..drop)
                .unwrap_or_default()
                .iter()
                .any(|&b| b != b'\r')
            {
                d.dropped_content = true;
            }
            d.bytes += drop;
            buf.advance(drop);
        }
        self.scan = buf.len();
        None
    }

    fn decode_banner(&mut self, buf: &mut BytesMut) -> Option<Frame> {
        match buf.get(self.scan..).and_then(find_lf) {
            Some(off) if self.scan + off < self.limits.max_message_bytes => {
                let line = buf.split_to(self.scan + off + 1).freeze();
                let text = strip_cr(line.strip_suffix(b"\n").unwrap_or(&line));
                let banner = Value::from_bytes(line.slice_ref(text));
                self.expect_banner = false;
                self.reset_frame();
                Some(Frame::Banner(banner))
            }
            found => {
                self.scan = buf.len();
                // A banner past the limit is dropped like an oversized message, the same
                // whether its line end has arrived yet or not.
                if found.is_some() || buf.len() > self.limits.max_message_bytes {
                    self.expect_banner = false;
                    let reason = SkipReason::TooLarge {
                        limit: self.limits.max_message_bytes,
                    };
                    self.start_discard(buf, reason);
                }
                None
            }
        }
    }

    /// A complete frame whose headers were indexed while it was framed.
    fn finish_indexed(&mut self, frame: bytes::Bytes) -> Frame {
        // The next message is likely the same shape: start its index at this one's size.
        let next = Vec::with_capacity(self.spans.len());
        let spans = std::mem::replace(&mut self.spans, next);
        Frame::Message(Message::from_spans(frame, spans))
    }

    fn finish(&mut self, frame: bytes::Bytes) -> Frame {
        match parser::parse_frame(&frame) {
            Ok(m) => Frame::Message(m),
            Err(e) => {
                self.skipped += 1;
                Frame::Skipped(Skipped {
                    reason: SkipReason::Malformed(e),
                    bytes: frame.len(),
                })
            }
        }
    }
}

impl Decoder for AmiCodec {
    type Item = Frame;
    type Error = CodecError;

    /// `Ok(None)` means "need more bytes"; data never makes this an error.
    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, CodecError> {
        loop {
            if self.discard.is_some() {
                return Ok(self.discard_step(buf));
            }
            if self.expect_banner {
                let banner = self.decode_banner(buf);
                if banner.is_some() || self.discard.is_none() {
                    return Ok(banner);
                }
                continue;
            }
            let mut over: Option<SkipReason> = None;
            while let Some(off) = buf.get(self.scan..).and_then(find_lf) {
                let lf = self.scan + off;
                self.scan = lf + 1;
                let line = strip_cr(buf.get(self.line_start..lf).unwrap_or_default());
                let last_line = if self.follows {
                    line.ends_with(END_COMMAND)
                } else {
                    line.is_empty() && self.line_start > 0
                };
                if last_line && lf >= self.limits.max_message_bytes {
                    // Its last line took it over the limit: the same verdict as when the
                    // bytes arrive in smaller reads.
                    buf.advance(lf + 1);
                    self.reset_frame();
                    self.skipped += 1;
                    return Ok(Some(Frame::Skipped(Skipped {
                        reason: SkipReason::TooLarge {
                            limit: self.limits.max_message_bytes,
                        },
                        bytes: lf + 1,
                    })));
                }
                if self.follows {
                    if line.ends_with(END_COMMAND) {
                        let frame = buf.split_to(lf + 1).freeze();
                        self.reset_frame();
                        return Ok(Some(self.finish(frame)));
                    }
                } else if line.is_empty() {
                    if self.line_start == 0 {
                        // Blank lines between messages (and after a legacy reply's
                        // marker) carry nothing.
                        buf.advance(lf + 1);
                        self.reset_frame();
                        continue;
                    }
                    let frame = buf.split_to(self.line_start).freeze();
                    buf.advance(lf + 1 - self.line_start);
                    let message = self.finish_indexed(frame);
                    self.reset_frame();
                    return Ok(Some(message));
                } else if self.lines == 0 && parser::is_follows_line(line) {
                    self.follows = true;
                } else {
                    self.spans
                        .push(parser::header_span_at(line, self.line_start));
                }
                self.lines += 1;
                self.line_start = lf + 1;
                if self.lines > self.limits.max_headers {
                    over = Some(SkipReason::TooManyHeaders {
                        limit: self.limits.max_headers,
                    });
                    break;
                }
                if self.line_start > self.limits.max_message_bytes {
                    over = Some(SkipReason::TooLarge {
                        limit: self.limits.max_message_bytes,
                    });
                    break;
                }
            }
            if over.is_none() {
                self.scan = buf.len();
                if buf.len() > self.limits.max_message_bytes {
                    over = Some(SkipReason::TooLarge {
                        limit: self.limits.max_message_bytes,
                    });
                }
            }
            match over {
                Some(reason) => self.start_discard(buf, reason),
                None => return Ok(None),
            }
        }
    }

    /// At end of stream a partial message is dropped: it can never complete.
    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, CodecError> {
        let frame = self.decode(buf)?;
        if frame.is_none() {
            buf.clear();
            self.reset_frame();
            self.discard = None;
        }
        Ok(frame)
    }
}

/// Writes an action with its `ActionID`.
impl<'a> Encoder<(&'a str, &'a Action)> for AmiCodec {
    type Error = CodecError;

    fn encode(
        &mut self,
        item: (&'a str, &'a Action),
        dst: &mut BytesMut,
    ) -> Result<(), CodecError> {
        item.1.write_with_id(item.0, dst);
        Ok(())
    }
}

/// Decodes every frame in `bytes` at once (captures, fuzzing, benchmarks): the banner
/// when `banner` is set, then messages; a trailing partial message is left out.
pub fn decode_all(bytes: &[u8], limits: Limits, banner: bool) -> Vec<Frame> {
    let mut codec = if banner {
        AmiCodec::new(limits)
    } else {
        AmiCodec::without_banner(limits)
    };
    let mut buf = BytesMut::from(bytes);
    let mut out = Vec::new();
    while let Ok(Some(frame)) = codec.decode(&mut buf) {
        out.push(frame);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a test expects one frame to be, as text.
    #[derive(Debug, PartialEq)]
    enum F {
        Banner(&'static str),
        M(Vec<(&'static str, &'static str)>),
        Legacy(Vec<(&'static str, &'static str)>, Vec<&'static str>),
        Skip,
    }

    fn text_of(frame: &Frame) -> (String, Vec<(String, String)>, Option<Vec<String>>) {
        match frame {
            Frame::Banner(b) => ("banner".into(), vec![("".into(), b.text().into())], None),
            Frame::Skipped(_) => ("skip".into(), vec![], None),
            Frame::Message(m) => (
                "m".into(),
                m.headers()
                    .map(|h| (h.name.text().into(), h.value.text().into()))
                    .collect(),
                m.legacy_output()
                    .map(|l| l.iter().map(|v| v.text().into_owned()).collect()),
            ),
        }
    }

    fn expected_text(f: &F) -> (String, Vec<(String, String)>, Option<Vec<String>>) {
        let pairs = |p: &[(&str, &str)]| {
            p.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<Vec<_>>()
        };
        match f {
            F::Banner(b) => ("banner".into(), vec![("".into(), b.to_string())], None),
            F::Skip => ("skip".into(), vec![], None),
            F::M(p) => ("m".into(), pairs(p), None),
            F::Legacy(p, out) => (
                "m".into(),
                pairs(p),
                Some(out.iter().map(|s| s.to_string()).collect()),
            ),
        }
    }

    fn decode_chunks(input: &[u8], limits: Limits, banner: bool, chunk: usize) -> Vec<Frame> {
        let mut codec = if banner {
            AmiCodec::new(limits)
        } else {
            AmiCodec::without_banner(limits)
        };
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for piece in input.chunks(chunk.max(1)) {
            buf.extend_from_slice(piece);
            loop {
                match codec.decode(&mut buf) {
                    Ok(Some(f)) => out.push(f),
                    Ok(None) => break,
                    Err(e) => panic!("decode error {e}"),
                }
            }
            assert!(
                buf.len() <= limits.max_message_bytes + chunk + 2 * DISCARD_TAIL,
                "buffer grew past the limit: {}",
                buf.len()
            );
        }
        out
    }

    /// The one helper every parser case goes through: the whole input, every chunking,
    /// and every incomplete prefix (which must yield only the frames already complete —
    /// "need more bytes" — and never an error).
    fn check(limits: Limits, banner: bool, input: &[u8], expected: &[F]) {
        let want: Vec<_> = expected.iter().map(expected_text).collect();
        let whole = decode_all(input, limits, banner);
        let got: Vec<_> = whole.iter().map(text_of).collect();
        assert_eq!(got, want, "input {:?}", String::from_utf8_lossy(input));
        for chunk in [1, 2, 3, 7, 64] {
            let got: Vec<_> = decode_chunks(input, limits, banner, chunk)
                .iter()
                .map(text_of)
                .collect();
            assert_eq!(got, want, "chunk size {chunk}");
        }
        for k in 0..input.len() {
            let prefix = input.get(..k).unwrap();
            let got: Vec<_> = decode_all(prefix, limits, banner)
                .iter()
                .map(text_of)
                .collect();
            assert!(
                want.starts_with(&got),
                "prefix of {k} bytes gave {got:?}, not a prefix of {want:?}"
            );
        }
        if let Some(last) = input.len().checked_sub(1) {
            let short = decode_all(input.get(..last).unwrap(), limits, banner);
            assert!(
                short.len() < want.len()
                    || input.ends_with(b"\r\n\r\n")
                    || input.ends_with(b"\n\n")
            );
        }
    }

    fn small() -> Limits {
        Limits {
            max_message_bytes: 256,
            max_headers: 8,
        }
    }

    #[test]
    fn parser_cases_from_the_table() {
        use F::*;
        let cases: Vec<(&str, bool, &[u8], Vec<F>)> = vec![
            (
                "banner then a CRLF message",
                true,
                b"Asterisk Call Manager/11.0.0\r\nResponse: Success\r\nMessage: Authentication accepted\r\n\r\n",
                vec![
                    Banner("Asterisk Call Manager/11.0.0"),
                    M(vec![("Response", "Success"), ("Message", "Authentication accepted")]),
                ],
            ),
            (
                "bare LF line ends, and a mix",
                false,
                b"Event: A\nX: 1\r\nY: 2\n\r\nEvent: B\n\n",
                vec![
                    M(vec![("Event", "A"), ("X", "1"), ("Y", "2")]),
                    M(vec![("Event", "B")]),
                ],
            ),
            (
                "repeated keys keep their order",
                false,
                b"Event: Newchannel\r\nChanVariable: A=1\r\nChanVariable: B=\r\nChanVariable: A=2\r\n\r\n",
                vec![M(vec![
                    ("Event", "Newchannel"),
                    ("ChanVariable", "A=1"),
                    ("ChanVariable", "B="),
                    ("ChanVariable", "A=2"),
                ])],
            ),
            (
                "empty values, with and without the space",
                false,
                b"Event: X\r\nAccountCode: \r\nLanguage:\r\n\r\n",
                vec![M(vec![("Event", "X"), ("AccountCode", ""), ("Language", "")])],
            ),
            (
                "colons inside values",
                false,
                b"Event: X\r\nApplicationData: agi://127.0.0.1:4573/route,a:b\r\n\r\n",
                vec![M(vec![
                    ("Event", "X"),
                    ("ApplicationData", "agi://127.0.0.1:4573/route,a:b"),
                ])],
            ),
            (
                "digits and odd characters in names",
                false,
                b"Event: X\r\nVar1_2-x.y[0]: v\r\n2nd: w\r\n\r\n",
                vec![M(vec![("Event", "X"), ("Var1_2-x.y[0]", "v"), ("2nd", "w")])],
            ),
            (
                "blank lines between messages are skipped",
                false,
                b"\r\n\nEvent: A\r\n\r\n\r\n\nEvent: B\r\n\r\n",
                vec![M(vec![("Event", "A")]), M(vec![("Event", "B")])],
            ),
            (
                "modern command output",
                false,
                b"Response: Success\r\nMessage: Command output follows\r\nOutput: Asterisk 22.10.1\r\nOutput: \r\nOutput:   indented\r\n\r\n",
                vec![M(vec![
                    ("Response", "Success"),
                    ("Message", "Command output follows"),
                    ("Output", "Asterisk 22.10.1"),
                    ("Output", ""),
                    ("Output", "  indented"),
                ])],
            ),
            (
                "legacy Follows with empty lines and colons in the output",
                false,
                b"Response: Follows\r\nPrivilege: Command\r\nActionID: 7\r\nline one\n\nUptime: 5 days\n--END COMMAND--\r\n\r\nEvent: Next\r\n\r\n",
                vec![
                    Legacy(
                        vec![("Response", "Follows"), ("Privilege", "Command"), ("ActionID", "7")],
                        vec!["line one", "", "Uptime: 5 days"],
                    ),
                    M(vec![("Event", "Next")]),
                ],
            ),
            (
                "legacy output without a final newline runs into the marker",
                false,
                b"Response: Follows\r\nPrivilege: Command\r\nNo such command--END COMMAND--\r\n\r\n",
                vec![Legacy(
                    vec![("Response", "Follows"), ("Privilege", "Command")],
                    vec!["No such command"],
                )],
            ),
            (
                "a line without a colon is a name with an empty value",
                false,
                b"Event: X\r\njunk line\r\n\r\n",
                vec![M(vec![("Event", "X"), ("junk line", "")])],
            ),
            (
                "a message over the byte limit is skipped and the next one read",
                false,
                [
                    b"Event: Big\r\n".to_vec(),
                    b"Data: xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n".repeat(4),
                    b"\r\nEvent: After\r\n\r\n".to_vec(),
                ]
                .concat()
                .leak(),
                vec![Skip, M(vec![("Event", "After")])],
            ),
            (
                "a message with too many headers is skipped and the next one read",
                false,
                b"Event: Many\r\nA: 1\r\nA: 2\r\nA: 3\r\nA: 4\r\nA: 5\r\nA: 6\r\nA: 7\r\nA: 8\r\n\r\nEvent: After\r\n\r\n",
                vec![Skip, M(vec![("Event", "After")])],
            ),
            (
                "one endless line is dropped as it streams and the stream resynchronises",
                false,
                [vec![b'z'; 1000], b"\r\n\r\nEvent: After\r\n\r\n".to_vec()]
                    .concat()
                    .leak(),
                vec![Skip, M(vec![("Event", "After")])],
            ),
            (
                "an oversized legacy reply is skipped up to its end marker",
                false,
                [
                    b"Response: Follows\r\n".to_vec(),
                    b"\n".repeat(20),
                    b"--END COMMAND--\r\n\r\nEvent: After\r\n\r\n".to_vec(),
                ]
                .concat()
                .leak(),
                vec![Skip, M(vec![("Event", "After")])],
            ),
        ];
        for (name, banner, input, expected) in cases {
            eprintln!("case: {name}");
            check(small(), banner, input, &expected);
        }
    }

    #[test]
    fn non_utf8_values_come_through_byte_for_byte() {
        let input = include_bytes!("../../fixtures/ami/cp1251-callerid.ami");
        let frames = decode_all(input, Limits::default(), false);
        let Some(Frame::Message(m)) = frames.first() else {
            panic!("{frames:?}")
        };
        let name = m.get("CallerIDName").unwrap();
        assert_eq!(
            name.as_bytes(),
            b"\xc8\xe2\xe0\xed\xee\xe2 \xcf\xb8\xf2\xf0"
        );
        assert!(name.as_str().is_none());
        assert!(name.text().contains('\u{fffd}'));
        let Some(Frame::Message(m)) = frames.get(1) else {
            panic!("{frames:?}")
        };
        // Truncated UTF-8: the valid part reads, the cut byte is kept.
        assert_eq!(
            m.get("CallerIDName").unwrap().as_bytes(),
            b"\xd0\x9f\xd1\x91\xd1"
        );
    }

    #[test]
    fn the_bare_lf_fixture_reads_as_two_events() {
        let frames = decode_all(
            include_bytes!("../../fixtures/ami/bare-lf.ami"),
            Limits::default(),
            true,
        );
        let events: Vec<_> = frames
            .iter()
            .filter_map(|f| match f {
                Frame::Message(m) => m.event().map(|e| e.text().into_owned()),
                _ => None,
            })
            .collect();
        assert_eq!(events, ["Newchannel", "Hangup"]);
    }

    #[test]
    fn the_legacy_command_fixture_gives_output_lines() {
        let frames = decode_all(
            include_bytes!("../../fixtures/ami/legacy-command.ami"),
            Limits::default(),
            false,
        );
        let Some(Frame::Message(m)) = frames.first() else {
            panic!("{frames:?}")
        };
        assert_eq!(m.action_id().unwrap().text(), "42");
        assert_eq!(
            m.output_lines(),
            [
                "Channel              Location             State   Application(Data)",
                "",
                "Uptime: 5 days, 2 hours",
                "1 active channel"
            ]
        );
        assert!(matches!(frames.get(1), Some(Frame::Message(m)) if m.is("Event", "FullyBooted")));
    }

    #[test]
    fn a_ten_thousand_line_output_fits_the_default_limits() {
        let frames = decode_all(
            include_bytes!("../../fixtures/ami/output-10000-lines.ami"),
            Limits::default(),
            false,
        );
        let Some(Frame::Message(m)) = frames.first() else {
            panic!("{frames:?}")
        };
        let lines = m.output_lines();
        assert_eq!(lines.len(), 10_000);
        assert_eq!(lines.last().unwrap(), "line 09999");
    }

    #[test]
    fn the_over_limit_fixture_is_skipped_counted_and_the_next_event_read() {
        let limits = Limits {
            max_message_bytes: 64 * 1024,
            max_headers: 20_000,
        };
        let input = include_bytes!("../../fixtures/ami/over-limit.ami");
        let mut codec = AmiCodec::without_banner(limits);
        let mut buf = BytesMut::new();
        let mut frames = Vec::new();
        for piece in input.chunks(4096) {
            buf.extend_from_slice(piece);
            while let Some(f) = codec.decode(&mut buf).unwrap() {
                frames.push(f);
            }
            assert!(buf.len() <= limits.max_message_bytes + 4096);
        }
        assert!(matches!(
            frames.first(),
            Some(Frame::Skipped(Skipped {
                reason: SkipReason::TooLarge { .. },
                ..
            }))
        ));
        assert!(matches!(frames.get(1), Some(Frame::Message(m)) if m.is("Event", "Hangup")));
        assert_eq!(codec.skipped(), 1);
    }

    #[test]
    fn the_decoder_remembers_how_far_it_scanned() {
        let mut codec = AmiCodec::without_banner(Limits::default());
        let mut buf = BytesMut::from(&b"Event: A\r\nLong: "[..]);
        assert!(codec.decode(&mut buf).unwrap().is_none());
        assert_eq!(codec.scan, buf.len());
        assert_eq!(codec.line_start, 10);
        buf.extend_from_slice(b"value\r\n");
        assert!(codec.decode(&mut buf).unwrap().is_none());
        assert_eq!(codec.scan, buf.len());
        assert_eq!(codec.lines, 2);
        buf.extend_from_slice(b"\r\n");
        assert!(codec.decode(&mut buf).unwrap().is_some());
        assert!(buf.is_empty());
    }

    #[test]
    fn parse_write_parse_gives_the_same_message() {
        let inputs: [&[u8]; 3] = [
            include_bytes!("../../fixtures/ami/legacy-command.ami"),
            include_bytes!("../../fixtures/ami/cp1251-callerid.ami"),
            b"Event: X\r\nA:\r\n:b\r\n\r\r\nK:  two spaces\n\n",
        ];
        for input in inputs {
            for frame in decode_all(input, Limits::default(), false) {
                let Frame::Message(m) = frame else { continue };
                let again = decode_all(&m.to_bytes(), Limits::default(), false);
                assert_eq!(again, vec![Frame::Message(m)]);
            }
        }
    }
}
