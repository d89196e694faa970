//! The AGI environment Asterisk sends first: `agi_<name>: <value>` lines ended by an
//! empty line.
//!
//! Owns the grammar of one environment line, the variable-count bound, and typed
//! access to the well-known variables. It must never drop a variable it does not
//! know, never assume UTF-8, and never do I/O.
//!
//! ```text
//! env      = *env-line empty-line
//! env-line = name ":" [SP] value LF      ; value may contain ":" and be empty
//! ```

use bytes::{Bytes, BytesMut};

use super::line::{LineTooLong, find_either, find_newline};
use super::text::AgiText;

/// Bounds on what an environment may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnvLimits {
    /// Longest line, in bytes.
    pub max_line: usize,
    /// Most variables (lines) before the empty line.
    pub max_variables: usize,
}

impl Default for EnvLimits {
    fn default() -> Self {
        EnvLimits {
            max_line: 8192,
            max_variables: 256,
        }
    }
}

/// Why an environment was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvError {
    #[error("environment line without `:`: {line:?}")]
    Malformed { line: AgiText },
    #[error("environment has more than {max} variables")]
    TooManyVariables { max: usize },
    #[error(transparent)]
    LineTooLong(#[from] LineTooLong),
}

/// The environment of one AGI session, in the order Asterisk sent it: the bytes as
/// received and where each variable's name and value lie in them (one buffer shared
/// by every variable, no copy or reference count per variable).
#[derive(Clone, Default)]
pub struct AgiEnv {
    block: Bytes,
    spans: Vec<Span>,
}

/// Where one variable lies in [`AgiEnv::block`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    name: (usize, usize),
    value: (usize, usize),
}

impl AgiEnv {
    fn bytes(&self, (start, end): (usize, usize)) -> &[u8] {
        self.block.get(start..end).unwrap_or_default()
    }

    fn text_of(&self, (start, end): (usize, usize)) -> AgiText {
        AgiText::new(self.block.slice(start.min(end)..end.min(self.block.len())))
    }

    /// Every variable as sent, names included (`agi_channel`, …), unknown ones too.
    pub fn variables(&self) -> Vec<(AgiText, AgiText)> {
        self.spans
            .iter()
            .map(|s| (self.text_of(s.name), self.text_of(s.value)))
            .collect()
    }

    /// Every variable's name and value as sent, without copying.
    pub fn pairs(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        self.spans
            .iter()
            .map(|s| (self.bytes(s.name), self.bytes(s.value)))
    }

    /// The value of the `i`th variable.
    pub fn value(&self, i: usize) -> Option<&[u8]> {
        self.spans.get(i).map(|s| self.bytes(s.value))
    }

    /// The value of the `i`th variable, sharing the environment's bytes.
    pub fn value_text(&self, i: usize) -> Option<AgiText> {
        self.spans.get(i).map(|s| self.text_of(s.value))
    }

    /// How many variables were sent.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    fn span(&self, name: &str) -> Option<&Span> {
        self.spans
            .iter()
            .find(|s| self.bytes(s.name) == name.as_bytes())
    }

    /// The first variable named `name` (`"agi_channel"`).
    pub fn get(&self, name: &str) -> Option<AgiText> {
        self.span(name).map(|s| self.text_of(s.value))
    }

    /// The bytes of the first variable named `name`.
    pub fn get_bytes(&self, name: &str) -> Option<&[u8]> {
        self.span(name).map(|s| self.bytes(s.value))
    }

    /// A variable as text, invalid UTF-8 replaced; empty when absent.
    pub fn text(&self, name: &str) -> String {
        self.get_bytes(name)
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default()
    }

    /// `agi_arg_1`, `agi_arg_2`, … in numeric order (`agi_arg_10` after `agi_arg_9`).
    pub fn args(&self) -> Vec<AgiText> {
        let number = |s: &Span| {
            self.bytes(s.name)
                .strip_prefix(b"agi_arg_")
                .and_then(|n| std::str::from_utf8(n).ok())?
                .parse::<u32>()
                .ok()
        };
        // Asterisk sends them in order (1, 2, 3…): taken as they come while they are.
        let mut args = Vec::new();
        let mut last = None;
        for s in &self.spans {
            if let Some(n) = number(s) {
                if last.is_some_and(|last| n <= last) {
                    return self.args_sorted(number);
                }
                last = Some(n);
                args.push(self.text_of(s.value));
            }
        }
        args
    }

    /// [`AgiEnv::args`] when they were not sent in order: the first of each number.
    fn args_sorted(&self, number: impl Fn(&Span) -> Option<u32>) -> Vec<AgiText> {
        let mut numbered: Vec<(u32, &Span)> = self
            .spans
            .iter()
            .filter_map(|s| Some((number(s)?, s)))
            .collect();
        numbered.sort_by_key(|(n, _)| *n);
        numbered.dedup_by_key(|(n, _)| *n);
        numbered
            .into_iter()
            .map(|(_, s)| self.text_of(s.value))
            .collect()
    }

    /// `agi_network_script`: the part of `agi://host:port/<script>` after the host.
    pub fn network_script(&self) -> Option<&[u8]> {
        self.get_bytes("agi_network_script")
    }
}

impl PartialEq for AgiEnv {
    /// The same variables in the same order, however their lines were written.
    fn eq(&self, other: &AgiEnv) -> bool {
        self.spans.len() == other.spans.len() && self.pairs().eq(other.pairs())
    }
}

impl Eq for AgiEnv {}

impl std::fmt::Debug for AgiEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(
                self.pairs()
                    .map(|(n, v)| (String::from_utf8_lossy(n), String::from_utf8_lossy(v))),
            )
            .finish()
    }
}

/// Where a name lies in `line[start..end]` without surrounding whitespace: Unicode
/// whitespace when it is UTF-8, ASCII whitespace otherwise.
fn trim_name(line: &[u8], start: usize, end: usize) -> (usize, usize) {
    let name = line.get(start..end).unwrap_or_default();
    let trimmed = if name.is_ascii() {
        // What `str::trim` removes from ASCII text (`\x0b` included).
        let space = |b: &u8| matches!(b, b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | b' ');
        let from = name.iter().position(|b| !space(b)).unwrap_or(name.len());
        let to = name.iter().rposition(|b| !space(b)).map_or(from, |e| e + 1);
        return (start + from, start + to);
    } else {
        match std::str::from_utf8(name) {
            Ok(text) => text.trim().as_bytes(),
            Err(_) => name.trim_ascii(),
        }
    };
    // A subslice of `name`: its offset is the distance between the two.
    let from = (trimmed.as_ptr() as usize).saturating_sub(name.as_ptr() as usize);
    (start + from, start + from + trimmed.len())
}

/// Collects the environment's lines as they arrive, until the empty line that ends
/// them. Each line is scanned once; nothing is copied until the environment is
/// complete, and then only cut off the front of the read buffer.
///
/// ```text
/// env      = *env-line empty-line
/// env-line = name ":" [SP] value (LF / CR LF)   ; name: at least one byte, no ":"
/// ```
#[derive(Debug, Clone)]
pub struct EnvCollector {
    limits: EnvLimits,
    spans: Vec<Span>,
    /// Bytes at the front of the buffer already taken as whole lines.
    scanned: usize,
    /// Of the line after them: how much was searched, and its first `:` if seen.
    line_scanned: usize,
    colon: Option<usize>,
}

impl EnvCollector {
    pub fn new(limits: EnvLimits) -> EnvCollector {
        EnvCollector {
            limits,
            // Asterisk 22 sends 22 variables before the arguments: one allocation.
            spans: Vec::with_capacity(32.min(limits.max_variables)),
            scanned: 0,
            line_scanned: 0,
            colon: None,
        }
    }

    /// Reads the lines `buf` holds past those already seen (the environment starts at
    /// the front of `buf`, which only grows meanwhile); `Some` once the empty line
    /// arrived, the environment then taken off the front of `buf` and the bytes after
    /// it left there.
    ///
    /// # Errors
    /// A line longer than the bound (terminated or not), a line without a name and
    /// `:`, or one variable too many.
    pub fn collect(&mut self, buf: &mut BytesMut) -> Result<Option<AgiEnv>, EnvError> {
        let max_line = self.limits.max_line;
        loop {
            let start = self.scanned;
            let pending = buf.get(start..).unwrap_or_default();
            // One pass over the line for its first `:` and its end, resumed where the
            // last call stopped: a line arriving in pieces is not scanned again.
            let mut from = self.line_scanned;
            let newline = loop {
                let rest = pending.get(from..).unwrap_or_default();
                let found = if self.colon.is_none() {
                    find_either(rest, b':', b'\n')
                } else {
                    find_newline(rest)
                };
                match found.map(|i| from + i) {
                    Some(at) if pending.get(at) == Some(&b':') => {
                        self.colon = Some(at);
                        from = at + 1;
                    }
                    Some(at) => break Some(at),
                    None => break None,
                }
            };
            let Some(newline) = newline else {
                self.line_scanned = pending.len();
                // One more byte than the bound may still be the `\r` of a legal line.
                if pending.len() > max_line.saturating_add(1) {
                    return Err(LineTooLong { max: max_line }.into());
                }
                return Ok(None);
            };
            self.line_scanned = 0;
            let colon = self.colon.take();
            let mut end = start + newline;
            if end > start && buf.get(end - 1) == Some(&b'\r') {
                end -= 1;
            }
            if end - start > max_line {
                return Err(LineTooLong { max: max_line }.into());
            }
            self.scanned = start + newline + 1;
            if end == start {
                let block = buf.split_to(self.scanned).freeze();
                self.scanned = 0;
                return Ok(Some(AgiEnv {
                    block,
                    spans: std::mem::take(&mut self.spans),
                }));
            }
            if self.spans.len() >= self.limits.max_variables {
                return Err(EnvError::TooManyVariables {
                    max: self.limits.max_variables,
                });
            }
            let line = buf.get(start..end).unwrap_or_default();
            let colon = match colon {
                Some(colon) if colon > 0 => colon,
                _ => {
                    return Err(EnvError::Malformed {
                        line: AgiText::new(Bytes::copy_from_slice(line)),
                    });
                }
            };
            let (name_start, name_end) = trim_name(line, 0, colon);
            let value_start = if line.get(colon + 1) == Some(&b' ') {
                colon + 2
            } else {
                colon + 1
            };
            self.spans.push(Span {
                name: (start + name_start, start + name_end),
                value: (start + value_start, end),
            });
        }
    }
}

/// Parses a whole environment from the front of `input`: `Ok(None)` while it is
/// incomplete, otherwise the environment and the number of bytes it used.
///
/// # Errors
/// See [`EnvCollector::collect`].
pub fn parse_env(input: &[u8], limits: EnvLimits) -> Result<Option<(AgiEnv, usize)>, EnvError> {
    let mut buf = BytesMut::from(input);
    let mut collector = EnvCollector::new(limits);
    Ok(collector
        .collect(&mut buf)?
        .map(|env| (env, input.len() - buf.len())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agi::line::LineFramer;
    use nom::bytes::complete::{tag, take_till1};
    use nom::combinator::{opt, rest};
    use nom::{IResult, Parser};

    type Variables = Vec<(Vec<u8>, Vec<u8>)>;

    /// The line-by-line parser this one replaced (nom grammar per line), as an oracle.
    fn reference(input: &[u8], limits: EnvLimits) -> Result<Option<(Variables, usize)>, EnvError> {
        fn env_line(input: &[u8]) -> IResult<&[u8], (&[u8], &[u8])> {
            let (input, name) = take_till1(|b| b == b':')(input)?;
            let (input, _) = tag(&b":"[..])(input)?;
            let (input, _) = opt(tag(&b" "[..])).parse(input)?;
            let (input, value) = rest(input)?;
            Ok((input, (name, value)))
        }
        let mut buf = BytesMut::from(input);
        let mut framer = LineFramer::new(limits.max_line);
        let mut vars = Vec::new();
        while let Some(line) = framer.next_line(&mut buf)? {
            if line.is_empty() {
                return Ok(Some((vars, input.len() - buf.len())));
            }
            if vars.len() >= limits.max_variables {
                return Err(EnvError::TooManyVariables {
                    max: limits.max_variables,
                });
            }
            let Ok((_, (name, value))) = env_line(&line) else {
                return Err(EnvError::Malformed {
                    line: AgiText::new(line),
                });
            };
            let name = match std::str::from_utf8(name) {
                Ok(text) => text.trim().as_bytes(),
                Err(_) => name.trim_ascii(),
            };
            vars.push((name.to_vec(), value.to_vec()));
        }
        Ok(None)
    }

    fn same_as_reference(input: &[u8], limits: EnvLimits) {
        let ours = parse_env(input, limits).map(|found| {
            found.map(|(env, used)| {
                let vars: Variables = env.pairs().map(|(n, v)| (n.to_vec(), v.to_vec())).collect();
                (vars, used)
            })
        });
        assert_eq!(
            ours,
            reference(input, limits),
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }

    #[test]
    fn the_environment_parses_as_the_line_by_line_grammar_did() {
        let limits = EnvLimits {
            max_line: 40,
            max_variables: 8,
        };
        let mut inputs: Vec<Vec<u8>> = vec![
            FULL.to_vec(),
            b"a: 1\r\n\r\nrest".to_vec(),
            b" \x0bname\t :value\n\n".to_vec(),
            b"\xd0\x96 \xc2\xa0: x\n\xff : y\n\n".to_vec(),
            b"a:\nb: \n:c\n\n".to_vec(),
            b"\r\n".to_vec(),
            b"\n".to_vec(),
        ];
        let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/agi_env");
        if let Ok(dir) = std::fs::read_dir(corpus) {
            inputs.extend(dir.filter_map(|e| std::fs::read(e.ok()?.path()).ok()));
        }
        // Mutations: a byte replaced by one of the grammar's, at every position.
        let mut more = Vec::new();
        for input in inputs.iter().take(8) {
            for i in 0..input.len() {
                for b in [b'\n', b':', b' ', b'\r', b'x'] {
                    let mut m = input.clone();
                    if let Some(slot) = m.get_mut(i) {
                        *slot = b;
                    }
                    more.push(m);
                }
            }
        }
        for input in &inputs {
            for end in 0..=input.len() {
                let prefix = input.get(..end).unwrap();
                same_as_reference(prefix, limits);
                same_as_reference(prefix, EnvLimits::default());
            }
        }
        for input in &more {
            same_as_reference(input, limits);
            same_as_reference(input, EnvLimits::default());
        }
        // Arriving in pieces (one byte, then seven at a time) changes nothing.
        for input in &inputs {
            for step in [1, 7] {
                let mut collector = EnvCollector::new(limits);
                let mut buf = BytesMut::new();
                let mut outcome = Ok(None);
                for piece in input.chunks(step) {
                    buf.extend_from_slice(piece);
                    outcome = collector.collect(&mut buf);
                    if !matches!(outcome, Ok(None)) {
                        break;
                    }
                }
                let whole = parse_env(input, limits).map(|f| f.map(|(env, _)| env));
                assert_eq!(
                    outcome,
                    whole,
                    "{:?} in pieces of {step}",
                    String::from_utf8_lossy(input)
                );
            }
        }
    }

    const FULL: &[u8] = b"agi_network: yes\n\
agi_network_script: diagnostics?x=1\n\
agi_request: agi://127.0.0.1:4573/diagnostics?x=1\n\
agi_channel: Local/answer@fake-phones-0000001;1\n\
agi_language: en\n\
agi_type: Local\n\
agi_uniqueid: 1700000000.42\n\
agi_version: 22.10.1\n\
agi_callerid: 5551234\n\
agi_calleridname: \xc8\xe2\xe0\xed\n\
agi_callingpres: 0\n\
agi_dnid: unknown\n\
agi_context: medcall-agi-test\n\
agi_extension: args\n\
agi_priority: 2\n\
agi_enhanced: 0.0\n\
agi_accountcode: \n\
agi_threadid: 140000000000000\n\
agi_arg_1: hello world\n\
agi_arg_2: a:b\n\
agi_arg_10: ten\n\
agi_arg_3: three\n\
agi_future_thing: kept\n\
\n";

    #[test]
    fn a_full_environment_keeps_colons_unknown_names_and_non_utf8_values() {
        let (env, used) = parse_env(FULL, EnvLimits::default()).unwrap().unwrap();
        assert_eq!(used, FULL.len());
        assert_eq!(
            env.text("agi_request"),
            "agi://127.0.0.1:4573/diagnostics?x=1"
        );
        assert_eq!(env.get("agi_accountcode").unwrap(), "");
        assert_eq!(env.get("agi_future_thing").unwrap(), "kept");
        assert_eq!(
            env.get("agi_calleridname").unwrap().as_bytes(),
            b"\xc8\xe2\xe0\xed"
        );
        assert_eq!(
            env.args(),
            vec![
                AgiText::from("hello world"),
                AgiText::from("a:b"),
                AgiText::from("three"),
                AgiText::from("ten"),
            ]
        );
    }

    #[test]
    fn arguments_come_in_numeric_order_with_the_first_of_a_repeated_number() {
        for (text, expected) in [
            (
                "agi_arg_1: a\nagi_arg_2: b\nagi_arg_3: c\n\n",
                vec!["a", "b", "c"],
            ),
            ("agi_arg_2: b\nagi_arg_1: a\n\n", vec!["a", "b"]),
            (
                "agi_arg_1: a\nagi_arg_1: again\nagi_arg_2: b\n\n",
                vec!["a", "b"],
            ),
            (
                "agi_arg_1: a\nagi_arg_x: no\nagi_arg_+3: c\n\n",
                vec!["a", "c"],
            ),
            ("agi_channel: x\n\n", vec![]),
        ] {
            let (env, _) = parse_env(text.as_bytes(), EnvLimits::default())
                .unwrap()
                .unwrap();
            let args: Vec<String> = env.args().iter().map(ToString::to_string).collect();
            assert_eq!(args, expected, "{text:?}");
        }
    }

    #[test]
    fn every_incomplete_prefix_of_an_environment_asks_for_more_bytes() {
        for end in 0..FULL.len() {
            let prefix = FULL.get(..end).unwrap();
            assert_eq!(
                parse_env(prefix, EnvLimits::default()),
                Ok(None),
                "prefix of {end} bytes"
            );
        }
    }

    #[test]
    fn bytes_after_the_empty_line_are_left_for_the_commands() {
        let mut input = b"agi_channel: x\r\n\r\n".to_vec();
        input.extend_from_slice(b"200 result=0\n");
        let (env, used) = parse_env(&input, EnvLimits::default()).unwrap().unwrap();
        assert_eq!(env.get("agi_channel").unwrap(), "x");
        assert_eq!(used, 18);
    }

    #[test]
    fn malformed_lines_and_too_many_variables_are_refused() {
        let table: &[(&[u8], EnvError)] = &[
            (
                b"agi_channel x\n\n",
                EnvError::Malformed {
                    line: AgiText::from("agi_channel x"),
                },
            ),
            (
                b": no name\n\n",
                EnvError::Malformed {
                    line: AgiText::from(": no name"),
                },
            ),
            (
                b"a: 1\nb: 2\nc: 3\n\n",
                EnvError::TooManyVariables { max: 2 },
            ),
        ];
        let limits = EnvLimits {
            max_line: 64,
            max_variables: 2,
        };
        for (input, expected) in table {
            assert_eq!(
                parse_env(input, limits).as_ref(),
                Err(expected),
                "{input:?}"
            );
        }
        let long = [b'x'; 100];
        assert!(matches!(
            parse_env(&long, limits),
            Err(EnvError::LineTooLong(_))
        ));
    }
}
