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
use nom::bytes::complete::{tag, take_till1};
use nom::combinator::{opt, rest};
use nom::{IResult, Parser};

use super::line::{LineFramer, LineTooLong};
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

/// The environment of one AGI session, in the order Asterisk sent it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgiEnv {
    /// Names and values are slices of the bytes received: no copy per variable.
    variables: Vec<(AgiText, AgiText)>,
}

impl AgiEnv {
    /// Every variable as sent, names included (`agi_channel`, …), unknown ones too.
    pub fn variables(&self) -> &[(AgiText, AgiText)] {
        &self.variables
    }

    /// The first variable named `name` (`"agi_channel"`).
    pub fn get(&self, name: &str) -> Option<&AgiText> {
        self.variables
            .iter()
            .find(|(n, _)| n.as_bytes() == name.as_bytes())
            .map(|(_, v)| v)
    }

    /// A variable as text, invalid UTF-8 replaced; empty when absent.
    pub fn text(&self, name: &str) -> String {
        self.get(name)
            .map(|v| v.to_str_lossy().into_owned())
            .unwrap_or_default()
    }

    /// `agi_arg_1`, `agi_arg_2`, … in numeric order (`agi_arg_10` after `agi_arg_9`).
    pub fn args(&self) -> Vec<AgiText> {
        let mut numbered: Vec<(u32, &AgiText)> = self
            .variables
            .iter()
            .filter_map(|(name, value)| {
                let n = name
                    .as_bytes()
                    .strip_prefix(b"agi_arg_")
                    .and_then(|n| std::str::from_utf8(n).ok())?
                    .parse::<u32>()
                    .ok()?;
                Some((n, value))
            })
            .collect();
        numbered.sort_by_key(|(n, _)| *n);
        numbered.dedup_by_key(|(n, _)| *n);
        numbered.into_iter().map(|(_, v)| v.clone()).collect()
    }

    /// `agi_network_script`: the part of `agi://host:port/<script>` after the host.
    pub fn network_script(&self) -> Option<&AgiText> {
        self.get("agi_network_script")
    }
}

/// One environment line, parsed: `(name, value)`.
///
/// ```text
/// env-line = name ":" [SP] value
/// ```
fn env_line(input: &[u8]) -> IResult<&[u8], (&[u8], &[u8])> {
    let (input, name) = take_till1(|b| b == b':')(input)?;
    let (input, _) = tag(&b":"[..])(input)?;
    let (input, _) = opt(tag(&b" "[..])).parse(input)?;
    let (input, value) = rest(input)?;
    Ok((input, (name, value)))
}

/// A name without surrounding whitespace: Unicode whitespace when it is UTF-8,
/// ASCII whitespace otherwise.
fn trim_name(name: &[u8]) -> &[u8] {
    if name.is_ascii() {
        // What `str::trim` removes from ASCII text (`\x0b` included).
        let space = |b: &u8| matches!(b, b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | b' ');
        let start = name.iter().position(|b| !space(b)).unwrap_or(name.len());
        let end = name
            .iter()
            .rposition(|b| !space(b))
            .map_or(start, |e| e + 1);
        return name.get(start..end).unwrap_or_default();
    }
    match std::str::from_utf8(name) {
        Ok(text) => text.trim().as_bytes(),
        Err(_) => name.trim_ascii(),
    }
}

/// Collects environment lines until the empty line that ends them.
#[derive(Debug, Clone)]
pub struct EnvCollector {
    limits: EnvLimits,
    env: AgiEnv,
}

impl EnvCollector {
    pub fn new(limits: EnvLimits) -> EnvCollector {
        EnvCollector {
            limits,
            env: AgiEnv {
                // Asterisk 22 sends 22 variables before the arguments: one allocation.
                variables: Vec::with_capacity(32.min(limits.max_variables)),
            },
        }
    }

    /// Feeds one line (terminator removed); `Some` once the empty line completes it.
    ///
    /// # Errors
    /// A line without `:`, or one variable too many.
    pub fn push_line(&mut self, line: Bytes) -> Result<Option<AgiEnv>, EnvError> {
        if line.is_empty() {
            return Ok(Some(std::mem::take(&mut self.env)));
        }
        if self.env.variables.len() >= self.limits.max_variables {
            return Err(EnvError::TooManyVariables {
                max: self.limits.max_variables,
            });
        }
        let (name, value) = match env_line(&line) {
            Ok((_, (name, value))) => (name, value),
            Err(_) => {
                return Err(EnvError::Malformed {
                    line: AgiText::new(line),
                });
            }
        };
        // Names are trimmed (as text when they are UTF-8, else of ASCII whitespace)
        // and kept as slices of the line, like values.
        let name = trim_name(name);
        let name = line.slice_ref(name);
        let value = line.slice_ref(value);
        self.env
            .variables
            .push((AgiText::new(name), AgiText::new(value)));
        Ok(None)
    }
}

/// Parses a whole environment from the front of `input`: `Ok(None)` while it is
/// incomplete, otherwise the environment and the number of bytes it used.
///
/// # Errors
/// See [`EnvCollector::push_line`] and [`LineTooLong`].
pub fn parse_env(input: &[u8], limits: EnvLimits) -> Result<Option<(AgiEnv, usize)>, EnvError> {
    let mut buf = BytesMut::from(input);
    let mut framer = LineFramer::new(limits.max_line);
    let mut collector = EnvCollector::new(limits);
    while let Some(line) = framer.next_line(&mut buf)? {
        if let Some(env) = collector.push_line(line)? {
            return Ok(Some((env, input.len() - buf.len())));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

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
