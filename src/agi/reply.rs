//! What Asterisk sends after the environment: replies to commands and the
//! unsolicited `HANGUP` line.
//!
//! Owns the grammar of a reply line, the assembly of multi-line `520-` usage
//! blocks, and the bound on their size. It must never do I/O and never reject a
//! reply code it does not know: unknown codes are kept as [`Reply::Other`].
//!
//! ```text
//! inbound    = "HANGUP" / reply
//! reply      = code SP body / usage
//! code       = 3DIGIT
//! body       = ["result=" token] [SP "(" data ")"] [SP "endpos=" 1*DIGIT] [SP text]
//!              ; data runs to the LAST ")" of the line
//! usage      = "520-" text LF *(line LF) "520 End of proper usage."
//! trying     = "100 result=0 Trying..."   ; GOSUB, followed later by its real reply
//! ```

use bytes::{Bytes, BytesMut};
use nom::bytes::complete::{tag, take_till, take_while_m_n};
use nom::character::complete::digit1;
use nom::combinator::opt;
use nom::{IResult, Parser};

use super::line::{LineFramer, LineTooLong};
use super::text::AgiText;

/// Bounds on a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyLimits {
    /// Longest line, in bytes.
    pub max_line: usize,
    /// Most lines inside one `520-` usage block.
    pub max_usage_lines: usize,
}

impl Default for ReplyLimits {
    fn default() -> Self {
        ReplyLimits {
            max_line: 8192,
            max_usage_lines: 64,
        }
    }
}

/// Why a reply could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    #[error("not an AGI reply: {line:?}")]
    Malformed { line: AgiText },
    #[error("usage block longer than {max} lines")]
    UsageTooLong { max: usize },
    #[error(transparent)]
    LineTooLong(#[from] LineTooLong),
}

/// The fields of a `200`-style reply line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// `result=` as sent: a number for most commands, the digits for GET DATA.
    pub result: Option<AgiText>,
    /// The parenthesised data: a variable's value, `timeout`, `dtmf`, …
    pub data: Option<AgiText>,
    /// `endpos=`: where playback or recording stopped, in samples.
    pub endpos: Option<u64>,
    /// Whatever follows (`Gosub complete`, `results=1 score0=…`).
    pub text: AgiText,
}

impl Outcome {
    /// `result=` as a number, when it is one.
    pub fn result_number(&self) -> Option<i64> {
        self.result.as_ref()?.as_str()?.parse().ok()
    }
}

/// A complete reply to one command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `200 result=…`: the command ran; its meaning is in the outcome.
    Success(Outcome),
    /// `510 Invalid or unknown command`.
    InvalidCommand(AgiText),
    /// `511 Command Not Permitted on a dead channel…` (no `result=`).
    DeadChannel(AgiText),
    /// `520-…` usage block: the command's syntax was wrong. Holds the usage lines.
    Usage(Vec<AgiText>),
    /// `503 result=-2 …`: Asterisk could not run the command.
    Failure(Outcome),
    /// Any other code, kept as sent.
    Other { code: u16, outcome: Outcome },
}

impl Reply {
    /// The three-digit code.
    pub fn code(&self) -> u16 {
        match self {
            Reply::Success(_) => 200,
            Reply::InvalidCommand(_) => 510,
            Reply::DeadChannel(_) => 511,
            Reply::Usage(_) => 520,
            Reply::Failure(_) => 503,
            Reply::Other { code, .. } => *code,
        }
    }
}

/// One thing Asterisk said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    /// The channel hung up (or left the AGI); the command in flight still gets a reply.
    Hangup,
    /// `100 result=0 Trying...`: GOSUB started; its real reply follows later.
    Trying(Outcome),
    /// The reply to the command in flight.
    Reply(Reply),
}

/// One reply line, before multi-line assembly.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ReplyLine<'a> {
    Hangup,
    /// `NNN-text`
    Continued {
        code: u16,
        text: &'a [u8],
    },
    /// `NNN body`
    Last {
        code: u16,
        body: &'a [u8],
    },
}

/// `code = 3DIGIT` followed by "-", SP or the end of the line.
fn reply_line(input: &[u8]) -> IResult<&[u8], ReplyLine<'_>> {
    if input == b"HANGUP" {
        return Ok((&[], ReplyLine::Hangup));
    }
    let (input, digits) = take_while_m_n(3, 3, |b: u8| b.is_ascii_digit())(input)?;
    let code = digits
        .iter()
        .fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
    if let Some(text) = input.strip_prefix(b"-") {
        return Ok((&[], ReplyLine::Continued { code, text }));
    }
    match input.split_first() {
        None => Ok((input, ReplyLine::Last { code, body: input })),
        Some((b' ', body)) => Ok((&[], ReplyLine::Last { code, body })),
        Some(_) => Err(nom::Err::Error(nom::error::Error::new(
            input,
            nom::error::ErrorKind::Char,
        ))),
    }
}

/// `"result=" token`, the token running to the next space.
fn result_field(input: &[u8]) -> IResult<&[u8], &[u8]> {
    let (input, _) = tag(&b"result="[..])(input)?;
    take_till(|b| b == b' ')(input)
}

/// `"endpos=" 1*DIGIT`
fn endpos_field(input: &[u8]) -> IResult<&[u8], &[u8]> {
    let (input, _) = tag(&b"endpos="[..])(input)?;
    digit1(input)
}

fn trim_start(input: &[u8]) -> &[u8] {
    let n = input.iter().take_while(|&&b| b == b' ').count();
    input.get(n..).unwrap_or_default()
}

fn trim_end(input: &[u8]) -> &[u8] {
    let n = input.iter().rev().take_while(|&&b| b == b' ').count();
    input.get(..input.len() - n).unwrap_or_default()
}

/// The body of a reply line: `["result=" token] [SP "(" data ")"] [SP "endpos=" n] [SP text]`.
fn outcome(line: &Bytes, body: &[u8]) -> Outcome {
    let mut out = Outcome::default();
    let mut rest = trim_start(body);
    if let Ok((after, Some(token))) = opt(result_field).parse(rest) {
        out.result = Some(AgiText::new(line.slice_ref(token)));
        rest = trim_start(after);
    }
    if rest.first() == Some(&b'(') {
        if let Some(close) = rest.iter().rposition(|&b| b == b')') {
            let data = rest.get(1..close).unwrap_or_default();
            out.data = Some(AgiText::new(line.slice_ref(data)));
            rest = trim_start(rest.get(close + 1..).unwrap_or_default());
        }
    }
    if let Ok((after, digits)) = endpos_field(rest) {
        // More digits than a u64 holds: keep them in the text instead of failing.
        if let Some(n) = std::str::from_utf8(digits)
            .ok()
            .and_then(|s| s.parse().ok())
        {
            out.endpos = Some(n);
            rest = trim_start(after);
        }
    }
    out.text = AgiText::new(line.slice_ref(trim_end(rest)));
    out
}

/// Assembles lines into [`Inbound`]s, holding a `520-` usage block until its end.
#[derive(Debug, Clone)]
pub struct ReplyAssembler {
    limits: ReplyLimits,
    usage: Option<Vec<AgiText>>,
}

impl ReplyAssembler {
    pub fn new(limits: ReplyLimits) -> ReplyAssembler {
        ReplyAssembler {
            limits,
            usage: None,
        }
    }

    /// Feeds one line (terminator removed); `Some` when it completes something.
    ///
    /// # Errors
    /// A line that is no reply outside a usage block, or a usage block too long.
    pub fn push_line(&mut self, line: Bytes) -> Result<Option<Inbound>, ReplyError> {
        let parsed = reply_line(&line).map(|(_, l)| l);
        if let Some(usage) = self.usage.as_mut() {
            return match parsed {
                Ok(ReplyLine::Hangup) => Ok(Some(Inbound::Hangup)),
                Ok(ReplyLine::Last { code: 520, .. }) => {
                    let lines = self.usage.take().unwrap_or_default();
                    Ok(Some(Inbound::Reply(Reply::Usage(lines))))
                }
                _ => {
                    if usage.len() >= self.limits.max_usage_lines {
                        return Err(ReplyError::UsageTooLong {
                            max: self.limits.max_usage_lines,
                        });
                    }
                    usage.push(AgiText::new(line.clone()));
                    Ok(None)
                }
            };
        }
        match parsed {
            Ok(ReplyLine::Hangup) => Ok(Some(Inbound::Hangup)),
            Ok(ReplyLine::Continued { code: 520, .. }) => {
                self.usage = Some(Vec::new());
                Ok(None)
            }
            Ok(ReplyLine::Continued { .. }) | Err(_) => Err(ReplyError::Malformed {
                line: AgiText::new(line.clone()),
            }),
            Ok(ReplyLine::Last { code, body }) => {
                let text = || AgiText::new(line.slice_ref(trim_end(trim_start(body))));
                let reply = match code {
                    100 => return Ok(Some(Inbound::Trying(outcome(&line, body)))),
                    200 => Reply::Success(outcome(&line, body)),
                    510 => Reply::InvalidCommand(text()),
                    511 => Reply::DeadChannel(text()),
                    // A bare `520 …` (no block) is still a usage reply.
                    520 => Reply::Usage(vec![text()]),
                    503 => Reply::Failure(outcome(&line, body)),
                    code => Reply::Other {
                        code,
                        outcome: outcome(&line, body),
                    },
                };
                Ok(Some(Inbound::Reply(reply)))
            }
        }
    }
}

/// Parses one [`Inbound`] from the front of `input`: `Ok(None)` while incomplete,
/// otherwise it and the number of bytes it used.
///
/// # Errors
/// See [`ReplyAssembler::push_line`] and [`LineTooLong`].
pub fn parse_inbound(
    input: &[u8],
    limits: ReplyLimits,
) -> Result<Option<(Inbound, usize)>, ReplyError> {
    let mut buf = BytesMut::from(input);
    let mut framer = LineFramer::new(limits.max_line);
    let mut assembler = ReplyAssembler::new(limits);
    while let Some(line) = framer.next_line(&mut buf)? {
        if let Some(inbound) = assembler.push_line(line)? {
            return Ok(Some((inbound, input.len() - buf.len())));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn success(result: &str, data: Option<&str>, endpos: Option<u64>, text: &str) -> Inbound {
        Inbound::Reply(Reply::Success(Outcome {
            result: Some(AgiText::from(result)),
            data: data.map(AgiText::from),
            endpos,
            text: AgiText::from(text),
        }))
    }

    fn table() -> Vec<(&'static [u8], Inbound)> {
        vec![
            (b"200 result=0\n", success("0", None, None, "")),
            (b"200 result=1 (value)\n", success("1", Some("value"), None, "")),
            (
                b"200 result=1 (a (nested) value)\n",
                success("1", Some("a (nested) value"), None, ""),
            ),
            (b"200 result=1 ()\n", success("1", Some(""), None, "")),
            (
                b"200 result=0 endpos=12345\n",
                success("0", None, Some(12345), ""),
            ),
            (
                b"200 result=0 (timeout) endpos=8000\r\n",
                success("0", Some("timeout"), Some(8000), ""),
            ),
            (b"200 result=12# (timeout)\n", success("12#", Some("timeout"), None, "")),
            (b"200 result=-1\n", success("-1", None, None, "")),
            (
                b"200 result=0 Gosub complete\n",
                success("0", None, None, "Gosub complete"),
            ),
            (
                b"100 result=0 Trying...\n",
                Inbound::Trying(Outcome {
                    result: Some(AgiText::from("0")),
                    text: AgiText::from("Trying..."),
                    ..Outcome::default()
                }),
            ),
            (
                b"510 Invalid or unknown command\n",
                Inbound::Reply(Reply::InvalidCommand(AgiText::from(
                    "Invalid or unknown command",
                ))),
            ),
            (
                b"511 Command Not Permitted on a dead channel or intercepted channel\n",
                Inbound::Reply(Reply::DeadChannel(AgiText::from(
                    "Command Not Permitted on a dead channel or intercepted channel",
                ))),
            ),
            (
                b"520-Invalid command syntax.  Proper usage follows:\n Usage: STREAM FILE <filename>\n\n  Sends audio.\n520 End of proper usage.\n",
                Inbound::Reply(Reply::Usage(vec![
                    AgiText::from(" Usage: STREAM FILE <filename>"),
                    AgiText::from(""),
                    AgiText::from("  Sends audio."),
                ])),
            ),
            (
                b"503 result=-2 Memory allocation failure\n",
                Inbound::Reply(Reply::Failure(Outcome {
                    result: Some(AgiText::from("-2")),
                    text: AgiText::from("Memory allocation failure"),
                    ..Outcome::default()
                })),
            ),
            (
                b"299 result=7\n",
                Inbound::Reply(Reply::Other {
                    code: 299,
                    outcome: Outcome {
                        result: Some(AgiText::from("7")),
                        ..Outcome::default()
                    },
                }),
            ),
            (b"HANGUP\n", Inbound::Hangup),
        ]
    }

    #[test]
    fn every_reply_form_parses_to_its_typed_value() {
        for (input, expected) in table() {
            let (got, used) = parse_inbound(input, ReplyLimits::default())
                .unwrap_or_else(|e| panic!("{input:?}: {e}"))
                .unwrap_or_else(|| panic!("{input:?}: incomplete"));
            assert_eq!(got, expected, "{:?}", String::from_utf8_lossy(input));
            assert_eq!(used, input.len());
        }
    }

    #[test]
    fn every_incomplete_prefix_of_every_reply_asks_for_more_bytes() {
        for (input, _) in table() {
            for end in 0..input.len() {
                let prefix = input.get(..end).unwrap();
                assert_eq!(
                    parse_inbound(prefix, ReplyLimits::default()),
                    Ok(None),
                    "{:?}",
                    String::from_utf8_lossy(prefix)
                );
            }
        }
    }

    #[test]
    fn hangup_may_come_before_the_reply_to_the_command_in_flight() {
        let input = b"HANGUP\n200 result=-1 endpos=160\n";
        let (first, used) = parse_inbound(input, ReplyLimits::default())
            .unwrap()
            .unwrap();
        assert_eq!(first, Inbound::Hangup);
        let (second, _) = parse_inbound(input.get(used..).unwrap(), ReplyLimits::default())
            .unwrap()
            .unwrap();
        assert_eq!(second, success("-1", None, Some(160), ""));
    }

    #[test]
    fn lines_that_are_no_reply_are_refused_by_content() {
        let table: &[&[u8]] = &[
            b"hello\n",
            b"20 result=1\n",
            b"200x\n",
            b"201-more\n",
            b"\n",
        ];
        for input in table {
            assert!(
                matches!(
                    parse_inbound(input, ReplyLimits::default()),
                    Err(ReplyError::Malformed { .. })
                ),
                "{input:?}"
            );
        }
    }

    #[test]
    fn usage_blocks_and_lines_are_bounded() {
        let limits = ReplyLimits {
            max_line: 16,
            max_usage_lines: 2,
        };
        assert_eq!(
            parse_inbound(b"520-x\na\nb\nc\n520 End\n", limits),
            Err(ReplyError::UsageTooLong { max: 2 })
        );
        assert!(matches!(
            parse_inbound(b"200 result=1 (0123456789abcdef)\n", limits),
            Err(ReplyError::LineTooLong(_))
        ));
    }

    #[test]
    fn an_endpos_too_large_for_u64_is_kept_as_text() {
        let (got, _) = parse_inbound(
            b"200 result=0 endpos=99999999999999999999999\n",
            ReplyLimits::default(),
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            got,
            success("0", None, None, "endpos=99999999999999999999999")
        );
    }
}
