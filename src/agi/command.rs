//! AGI commands as wire lines, built only through typed constructors, and the typed
//! meaning of their replies.
//!
//! Owns the quoting of arguments and the refusal of CR, LF and NUL: a [`Command`]
//! that exists is safe to write. It must never write anything itself, and never let
//! a caller's value reach the wire unquoted.
//!
//! Asterisk (`res_agi.c`, `parse_args`) splits a command line on blanks outside
//! double quotes and takes the character after `\` literally. Every text argument is
//! therefore written as `"…"` with `\` and `"` escaped; numbers are written bare.

use std::fmt::Write as _;

use super::reply::{Outcome, Reply};
use super::text::AgiText;

/// Asterisk reads a command into a 2048-byte buffer (`AGI_BUF_LEN`), NUL included.
pub const MAX_COMMAND_BYTES: usize = 2047;

/// Why a command could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// A value holds CR, LF or NUL, which would end or cut the command line.
    #[error(
        "argument `{argument}` contains a forbidden byte 0x{byte:02x} (CR, LF and NUL cannot be sent)"
    )]
    ForbiddenByte { argument: &'static str, byte: u8 },
    /// The line would not fit Asterisk's command buffer.
    #[error("command is {len} bytes; Asterisk reads at most {max}")]
    TooLong { len: usize, max: usize },
    /// A custom command name that is not words of ASCII letters.
    #[error("command name {name:?} is not words of ASCII letters")]
    BadName { name: String },
}

/// One complete, safe command line, `\n` included.
#[derive(Clone, PartialEq, Eq)]
pub struct Command {
    line: String,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Command")
            .field(&self.line.trim_end())
            .finish()
    }
}

/// A line under construction.
struct Line(String);

impl Line {
    fn new(words: &'static str) -> Line {
        // Room for the usual arguments: one allocation per command.
        let mut line = String::with_capacity(64);
        line.push_str(words);
        Line(line)
    }

    /// Appends a text argument, quoted and escaped.
    fn text(mut self, argument: &'static str, value: &str) -> Result<Line, CommandError> {
        if let Some(byte) = value.bytes().find(|b| matches!(b, b'\r' | b'\n' | 0)) {
            return Err(CommandError::ForbiddenByte { argument, byte });
        }
        self.0.reserve(value.len() + 3);
        self.0.push_str(" \"");
        // Copied in runs between the bytes to escape (`"` and `\\` are ASCII, so a
        // run never splits a character).
        let mut rest = value;
        while let Some(i) = rest.find(['"', '\\']) {
            let Some((run, tail)) = rest.split_at_checked(i) else {
                break;
            };
            self.0.push_str(run);
            self.0.push('\\');
            let mut chars = tail.chars();
            if let Some(c) = chars.next() {
                self.0.push(c);
            }
            rest = chars.as_str();
        }
        self.0.push_str(rest);
        self.0.push('"');
        Ok(self)
    }

    fn opt_text(self, argument: &'static str, value: Option<&str>) -> Result<Line, CommandError> {
        match value {
            Some(v) => self.text(argument, v),
            None => Ok(self),
        }
    }

    /// Appends a number, bare.
    fn number(mut self, value: impl std::fmt::Display) -> Line {
        // Writing to a String cannot fail.
        let _ = write!(self.0, " {value}");
        self
    }

    fn done(mut self) -> Result<Command, CommandError> {
        self.0.push('\n');
        if self.0.len() > MAX_COMMAND_BYTES {
            return Err(CommandError::TooLong {
                len: self.0.len(),
                max: MAX_COMMAND_BYTES,
            });
        }
        Ok(Command { line: self.0 })
    }
}

/// `SET MUSIC` and `TDD MODE` switches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Switch {
    On,
    Off,
}

impl Switch {
    fn word(self) -> &'static str {
        match self {
            Switch::On => "on",
            Switch::Off => "off",
        }
    }
}

/// `TDD MODE` settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TddMode {
    On,
    Off,
    Tdd,
    Mate,
}

/// Optional arguments of `CONTROL STREAM FILE`; unset ones before a set one get
/// Asterisk's defaults (3000 ms, `#`, `*`, no pause key, offset 0).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ControlStream<'a> {
    pub skip_ms: Option<u32>,
    pub forward_key: Option<&'a str>,
    pub rewind_key: Option<&'a str>,
    pub pause_key: Option<&'a str>,
    pub offset_ms: Option<u64>,
}

/// Optional arguments of `RECORD FILE`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecordOptions {
    /// Start writing at this sample offset.
    pub offset_samples: Option<u64>,
    /// Play a beep first.
    pub beep: bool,
    /// Stop after this many seconds of silence.
    pub silence_s: Option<u32>,
}

impl Command {
    /// The bytes to write, `\n` included.
    pub fn as_bytes(&self) -> &[u8] {
        self.line.as_bytes()
    }

    /// The line without its `\n`, for logs.
    pub fn as_str(&self) -> &str {
        self.line.trim_end_matches('\n')
    }

    /// A command this module has no constructor for, e.g. one a later Asterisk adds.
    /// `name` must be words of ASCII letters (`"STREAM FILE"`); `args` are quoted.
    ///
    /// # Errors
    /// A bad name, a forbidden byte, or a line too long.
    pub fn custom(name: &str, args: &[&str]) -> Result<Command, CommandError> {
        let valid = !name.is_empty()
            && name
                .split(' ')
                .all(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_alphabetic()));
        if !valid {
            return Err(CommandError::BadName {
                name: name.to_string(),
            });
        }
        let mut line = Line(name.to_string());
        for arg in args {
            line = line.text("arg", arg)?;
        }
        line.done()
    }

    /// `ANSWER`
    pub fn answer() -> Command {
        Command {
            line: "ANSWER\n".into(),
        }
    }

    /// `ASYNCAGI BREAK` (meaningful only in async AGI).
    pub fn asyncagi_break() -> Command {
        Command {
            line: "ASYNCAGI BREAK\n".into(),
        }
    }

    /// `CHANNEL STATUS [channel]`; result is a [`ChannelStatus`].
    pub fn channel_status(channel: Option<&str>) -> Result<Command, CommandError> {
        Line::new("CHANNEL STATUS")
            .opt_text("channel", channel)?
            .done()
    }

    /// `CONTROL STREAM FILE file escape [skipms [ff [rew [pause [offsetms]]]]]`.
    pub fn control_stream_file(
        file: &str,
        escape_digits: &str,
        options: &ControlStream<'_>,
    ) -> Result<Command, CommandError> {
        let mut line = Line::new("CONTROL STREAM FILE")
            .text("file", file)?
            .text("escape_digits", escape_digits)?;
        let last = [
            options.skip_ms.is_some(),
            options.forward_key.is_some(),
            options.rewind_key.is_some(),
            options.pause_key.is_some(),
            options.offset_ms.is_some(),
        ]
        .iter()
        .rposition(|&set| set);
        let Some(last) = last else {
            return line.done();
        };
        line = line.number(options.skip_ms.unwrap_or(3000));
        if last >= 1 {
            line = line.text("forward_key", options.forward_key.unwrap_or("#"))?;
        }
        if last >= 2 {
            line = line.text("rewind_key", options.rewind_key.unwrap_or("*"))?;
        }
        if last >= 3 {
            line = line.text("pause_key", options.pause_key.unwrap_or(""))?;
        }
        if last >= 4 {
            line = line.number(options.offset_ms.unwrap_or(0));
        }
        line.done()
    }

    /// `DATABASE DEL family key`
    pub fn database_del(family: &str, key: &str) -> Result<Command, CommandError> {
        Line::new("DATABASE DEL")
            .text("family", family)?
            .text("key", key)?
            .done()
    }

    /// `DATABASE DELTREE family [keytree]`
    pub fn database_deltree(family: &str, keytree: Option<&str>) -> Result<Command, CommandError> {
        Line::new("DATABASE DELTREE")
            .text("family", family)?
            .opt_text("keytree", keytree)?
            .done()
    }

    /// `DATABASE GET family key`; the value comes back as data ([`variable`]).
    pub fn database_get(family: &str, key: &str) -> Result<Command, CommandError> {
        Line::new("DATABASE GET")
            .text("family", family)?
            .text("key", key)?
            .done()
    }

    /// `DATABASE PUT family key value`
    pub fn database_put(family: &str, key: &str, value: &str) -> Result<Command, CommandError> {
        Line::new("DATABASE PUT")
            .text("family", family)?
            .text("key", key)?
            .text("value", value)?
            .done()
    }

    /// `EXEC application options` — `options` is the application's argument string
    /// (`,`-separated as in the dialplan).
    pub fn exec(application: &str, options: &str) -> Result<Command, CommandError> {
        Line::new("EXEC")
            .text("application", application)?
            .text("options", options)?
            .done()
    }

    /// `GET DATA file [timeout_ms [max_digits]]`; read the answer with [`data_input`].
    pub fn get_data(
        file: &str,
        timeout_ms: Option<u32>,
        max_digits: Option<u32>,
    ) -> Result<Command, CommandError> {
        let mut line = Line::new("GET DATA").text("file", file)?;
        if timeout_ms.is_some() || max_digits.is_some() {
            line = line.number(timeout_ms.unwrap_or(0));
        }
        if let Some(max) = max_digits {
            line = line.number(max);
        }
        line.done()
    }

    /// `GET FULL VARIABLE expression [channel]` — evaluates `${…}` expressions.
    pub fn get_full_variable(
        expression: &str,
        channel: Option<&str>,
    ) -> Result<Command, CommandError> {
        Line::new("GET FULL VARIABLE")
            .text("expression", expression)?
            .opt_text("channel", channel)?
            .done()
    }

    /// `GET OPTION file escape [timeout_ms]`; read the answer with [`playback`].
    pub fn get_option(
        file: &str,
        escape_digits: &str,
        timeout_ms: Option<u32>,
    ) -> Result<Command, CommandError> {
        let mut line = Line::new("GET OPTION")
            .text("file", file)?
            .text("escape_digits", escape_digits)?;
        if let Some(t) = timeout_ms {
            line = line.number(t);
        }
        line.done()
    }

    /// `GET VARIABLE name`; read the answer with [`variable`].
    pub fn get_variable(name: &str) -> Result<Command, CommandError> {
        Line::new("GET VARIABLE").text("name", name)?.done()
    }

    /// `GOSUB context extension priority [arguments]` — `arguments` is the
    /// subroutine's `,`-separated argument list. Answered by `100 Trying...` then `200`.
    pub fn gosub(
        context: &str,
        extension: &str,
        priority: &str,
        arguments: Option<&str>,
    ) -> Result<Command, CommandError> {
        Line::new("GOSUB")
            .text("context", context)?
            .text("extension", extension)?
            .text("priority", priority)?
            .opt_text("arguments", arguments)?
            .done()
    }

    /// `HANGUP [channel]`
    pub fn hangup(channel: Option<&str>) -> Result<Command, CommandError> {
        Line::new("HANGUP").opt_text("channel", channel)?.done()
    }

    /// `NOOP`
    pub fn noop() -> Command {
        Command {
            line: "NOOP\n".into(),
        }
    }

    /// `RECEIVE CHAR timeout_ms` (0 waits forever).
    pub fn receive_char(timeout_ms: u32) -> Command {
        Command {
            line: format!("RECEIVE CHAR {timeout_ms}\n"),
        }
    }

    /// `RECEIVE TEXT timeout_ms` (0 waits forever); the text comes back as data.
    pub fn receive_text(timeout_ms: u32) -> Command {
        Command {
            line: format!("RECEIVE TEXT {timeout_ms}\n"),
        }
    }

    /// `RECORD FILE file format escape timeout_ms [offset] [BEEP] [s=silence]`
    /// (`timeout_ms` -1: no limit); read the answer with [`recording`].
    pub fn record_file(
        file: &str,
        format: &str,
        escape_digits: &str,
        timeout_ms: i64,
        options: RecordOptions,
    ) -> Result<Command, CommandError> {
        let mut line = Line::new("RECORD FILE")
            .text("file", file)?
            .text("format", format)?
            .text("escape_digits", escape_digits)?
            .number(timeout_ms);
        if options.offset_samples.is_some() || options.beep || options.silence_s.is_some() {
            line = line.number(options.offset_samples.unwrap_or(0));
        }
        if options.beep {
            line = line.text("beep", "BEEP")?;
        }
        if let Some(s) = options.silence_s {
            line = line.text("silence", &format!("s={s}"))?;
        }
        line.done()
    }

    /// `SAY ALPHA text escape`
    pub fn say_alpha(text: &str, escape_digits: &str) -> Result<Command, CommandError> {
        Line::new("SAY ALPHA")
            .text("text", text)?
            .text("escape_digits", escape_digits)?
            .done()
    }

    /// `SAY DATE unix_time escape`
    pub fn say_date(unix_time: i64, escape_digits: &str) -> Result<Command, CommandError> {
        Line::new("SAY DATE")
            .number(unix_time)
            .text("escape_digits", escape_digits)?
            .done()
    }

    /// `SAY DATETIME unix_time escape [format [timezone]]`; a timezone without a
    /// format gets Asterisk's default format.
    pub fn say_datetime(
        unix_time: i64,
        escape_digits: &str,
        format: Option<&str>,
        timezone: Option<&str>,
    ) -> Result<Command, CommandError> {
        let mut line = Line::new("SAY DATETIME")
            .number(unix_time)
            .text("escape_digits", escape_digits)?;
        if format.is_some() || timezone.is_some() {
            line = line.text("format", format.unwrap_or("ABdY 'digits/at' IMp"))?;
        }
        line.opt_text("timezone", timezone)?.done()
    }

    /// `SAY DIGITS number escape` — `digits` is said digit by digit.
    pub fn say_digits(digits: &str, escape_digits: &str) -> Result<Command, CommandError> {
        Line::new("SAY DIGITS")
            .text("digits", digits)?
            .text("escape_digits", escape_digits)?
            .done()
    }

    /// `SAY NUMBER number escape [gender]`
    pub fn say_number(
        number: i64,
        escape_digits: &str,
        gender: Option<&str>,
    ) -> Result<Command, CommandError> {
        Line::new("SAY NUMBER")
            .number(number)
            .text("escape_digits", escape_digits)?
            .opt_text("gender", gender)?
            .done()
    }

    /// `SAY PHONETIC text escape`
    pub fn say_phonetic(text: &str, escape_digits: &str) -> Result<Command, CommandError> {
        Line::new("SAY PHONETIC")
            .text("text", text)?
            .text("escape_digits", escape_digits)?
            .done()
    }

    /// `SAY TIME unix_time escape`
    pub fn say_time(unix_time: i64, escape_digits: &str) -> Result<Command, CommandError> {
        Line::new("SAY TIME")
            .number(unix_time)
            .text("escape_digits", escape_digits)?
            .done()
    }

    /// `SEND IMAGE image`
    pub fn send_image(image: &str) -> Result<Command, CommandError> {
        Line::new("SEND IMAGE").text("image", image)?.done()
    }

    /// `SEND TEXT text`
    pub fn send_text(text: &str) -> Result<Command, CommandError> {
        Line::new("SEND TEXT").text("text", text)?.done()
    }

    /// `SET AUTOHANGUP seconds` (0 cancels).
    pub fn set_autohangup(seconds: u32) -> Command {
        Command {
            line: format!("SET AUTOHANGUP {seconds}\n"),
        }
    }

    /// `SET CALLERID number` (`"Name" <number>` also accepted by Asterisk).
    pub fn set_callerid(callerid: &str) -> Result<Command, CommandError> {
        Line::new("SET CALLERID").text("callerid", callerid)?.done()
    }

    /// `SET CONTEXT context`
    pub fn set_context(context: &str) -> Result<Command, CommandError> {
        Line::new("SET CONTEXT").text("context", context)?.done()
    }

    /// `SET EXTENSION extension`
    pub fn set_extension(extension: &str) -> Result<Command, CommandError> {
        Line::new("SET EXTENSION")
            .text("extension", extension)?
            .done()
    }

    /// `SET MUSIC on|off [class]`
    pub fn set_music(switch: Switch, class: Option<&str>) -> Result<Command, CommandError> {
        let mut line = Line::new("SET MUSIC");
        line.0.push(' ');
        line.0.push_str(switch.word());
        line.opt_text("class", class)?.done()
    }

    /// `SET PRIORITY priority` — a number or a label.
    pub fn set_priority(priority: &str) -> Result<Command, CommandError> {
        Line::new("SET PRIORITY").text("priority", priority)?.done()
    }

    /// `SET VARIABLE name value`
    pub fn set_variable(name: &str, value: &str) -> Result<Command, CommandError> {
        Line::new("SET VARIABLE")
            .text("name", name)?
            .text("value", value)?
            .done()
    }

    /// `SPEECH ACTIVATE GRAMMAR name`
    pub fn speech_activate_grammar(name: &str) -> Result<Command, CommandError> {
        Line::new("SPEECH ACTIVATE GRAMMAR")
            .text("grammar", name)?
            .done()
    }

    /// `SPEECH CREATE engine`
    pub fn speech_create(engine: &str) -> Result<Command, CommandError> {
        Line::new("SPEECH CREATE").text("engine", engine)?.done()
    }

    /// `SPEECH DEACTIVATE GRAMMAR name`
    pub fn speech_deactivate_grammar(name: &str) -> Result<Command, CommandError> {
        Line::new("SPEECH DEACTIVATE GRAMMAR")
            .text("grammar", name)?
            .done()
    }

    /// `SPEECH DESTROY`
    pub fn speech_destroy() -> Command {
        Command {
            line: "SPEECH DESTROY\n".into(),
        }
    }

    /// `SPEECH LOAD GRAMMAR name path`
    pub fn speech_load_grammar(name: &str, path: &str) -> Result<Command, CommandError> {
        Line::new("SPEECH LOAD GRAMMAR")
            .text("grammar", name)?
            .text("path", path)?
            .done()
    }

    /// `SPEECH RECOGNIZE prompt timeout_ms [offset]`
    pub fn speech_recognize(
        prompt: &str,
        timeout_ms: u32,
        offset: Option<u64>,
    ) -> Result<Command, CommandError> {
        let mut line = Line::new("SPEECH RECOGNIZE")
            .text("prompt", prompt)?
            .number(timeout_ms);
        if let Some(o) = offset {
            line = line.number(o);
        }
        line.done()
    }

    /// `SPEECH SET name value`
    pub fn speech_set(name: &str, value: &str) -> Result<Command, CommandError> {
        Line::new("SPEECH SET")
            .text("name", name)?
            .text("value", value)?
            .done()
    }

    /// `SPEECH UNLOAD GRAMMAR name`
    pub fn speech_unload_grammar(name: &str) -> Result<Command, CommandError> {
        Line::new("SPEECH UNLOAD GRAMMAR")
            .text("grammar", name)?
            .done()
    }

    /// `STREAM FILE file escape [sample_offset]`; read the answer with [`playback`].
    pub fn stream_file(
        file: &str,
        escape_digits: &str,
        sample_offset: Option<u64>,
    ) -> Result<Command, CommandError> {
        let mut line = Line::new("STREAM FILE")
            .text("file", file)?
            .text("escape_digits", escape_digits)?;
        if let Some(o) = sample_offset {
            line = line.number(o);
        }
        line.done()
    }

    /// `TDD MODE on|off|tdd|mate`
    pub fn tdd_mode(mode: TddMode) -> Command {
        let word = match mode {
            TddMode::On => "on",
            TddMode::Off => "off",
            TddMode::Tdd => "tdd",
            TddMode::Mate => "mate",
        };
        Command {
            line: format!("TDD MODE {word}\n"),
        }
    }

    /// `VERBOSE message level` (level 1–4).
    pub fn verbose(message: &str, level: u8) -> Result<Command, CommandError> {
        Line::new("VERBOSE")
            .text("message", message)?
            .number(level)
            .done()
    }

    /// `WAIT FOR DIGIT timeout_ms` (-1 waits forever); read the answer with [`digit`].
    pub fn wait_for_digit(timeout_ms: i64) -> Command {
        Command {
            line: format!("WAIT FOR DIGIT {timeout_ms}\n"),
        }
    }
}

/// A reply that does not mean what the command's typed result needs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResultError {
    /// Not a `200` reply: dead channel, usage, unknown command, failure.
    #[error("command refused with code {}", .0.code())]
    Refused(Reply),
    /// `result=-1`: the command failed, usually because the channel hung up.
    #[error("command failed (result=-1)")]
    Failed(Outcome),
    /// A `200` reply whose fields do not fit the command.
    #[error("unexpected reply fields: {0:?}")]
    Unexpected(Outcome),
}

fn success(reply: Reply) -> Result<Outcome, ResultError> {
    match reply {
        Reply::Success(o) => Ok(o),
        other => Err(ResultError::Refused(other)),
    }
}

/// The key pressed: `result` is its ASCII code, 0 for none, -1 for failure.
fn key(outcome: &Outcome) -> Result<Option<char>, ResultError> {
    match outcome.result_number() {
        Some(0) => Ok(None),
        Some(n) if n < 0 => Err(ResultError::Failed(outcome.clone())),
        Some(n) => u8::try_from(n)
            .ok()
            .map(|b| Some(char::from(b)))
            .ok_or_else(|| ResultError::Unexpected(outcome.clone())),
        None => Err(ResultError::Unexpected(outcome.clone())),
    }
}

/// Result of `WAIT FOR DIGIT` and `RECEIVE CHAR`: the key, or `None` on timeout.
///
/// # Errors
/// [`ResultError`] when refused or failed (`-1`: hangup).
pub fn digit(reply: Reply) -> Result<Option<char>, ResultError> {
    key(&success(reply)?)
}

/// What `STREAM FILE`, `CONTROL STREAM FILE` and `GET OPTION` report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Playback {
    /// The escape digit that stopped playback, if any.
    pub digit: Option<char>,
    /// Where playback stopped, in samples (absent when the file could not be opened).
    pub endpos: Option<u64>,
    /// `result=-1`: playback failed or the channel hung up.
    pub failed: bool,
}

/// Reads a playback result.
///
/// # Errors
/// [`ResultError::Refused`] for non-`200` replies.
pub fn playback(reply: Reply) -> Result<Playback, ResultError> {
    let outcome = success(reply)?;
    match key(&outcome) {
        Ok(digit) => Ok(Playback {
            digit,
            endpos: outcome.endpos,
            failed: false,
        }),
        Err(ResultError::Failed(o)) => Ok(Playback {
            digit: None,
            endpos: o.endpos,
            failed: true,
        }),
        Err(e) => Err(e),
    }
}

/// What `GET DATA` reports: the digits entered, and whether input timed out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataInput {
    pub digits: String,
    pub timed_out: bool,
}

/// Reads a `GET DATA` result (`200 result=<digits> [(timeout)]`).
///
/// # Errors
/// [`ResultError`] when refused or failed (`-1`: hangup).
pub fn data_input(reply: Reply) -> Result<DataInput, ResultError> {
    let outcome = success(reply)?;
    if outcome.result_number() == Some(-1) {
        return Err(ResultError::Failed(outcome));
    }
    let digits = outcome
        .result
        .as_ref()
        .map(|r| r.to_str_lossy().into_owned())
        .unwrap_or_default();
    let timed_out = outcome.data.as_ref().is_some_and(|d| d == "timeout");
    Ok(DataInput { digits, timed_out })
}

/// Reads `GET VARIABLE`, `GET FULL VARIABLE` and `DATABASE GET`: `result=1 (value)`
/// is the value, `result=0` means unset.
///
/// # Errors
/// [`ResultError`] when refused.
pub fn variable(reply: Reply) -> Result<Option<AgiText>, ResultError> {
    let outcome = success(reply)?;
    match outcome.result_number() {
        Some(1) => Ok(Some(outcome.data.unwrap_or_default())),
        Some(0) => Ok(None),
        _ => Err(ResultError::Unexpected(outcome)),
    }
}

/// Why `RECORD FILE` stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recording {
    pub digit: Option<char>,
    /// `dtmf`, `timeout`, `hangup`, `randomerror`, … as Asterisk says it.
    pub reason: Option<AgiText>,
    pub endpos: Option<u64>,
    pub failed: bool,
}

/// Reads a `RECORD FILE` result.
///
/// # Errors
/// [`ResultError::Refused`] for non-`200` replies.
pub fn recording(reply: Reply) -> Result<Recording, ResultError> {
    let outcome = success(reply)?;
    let (digit, failed) = match key(&outcome) {
        Ok(d) => (d, false),
        Err(ResultError::Failed(_)) => (None, true),
        Err(e) => return Err(e),
    };
    Ok(Recording {
        digit,
        reason: outcome.data,
        endpos: outcome.endpos,
        failed,
    })
}

/// `CHANNEL STATUS` results (Asterisk's `AST_STATE_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelStatus {
    Down,
    Reserved,
    OffHook,
    Dialed,
    Ringing,
    Remoting,
    Up,
    Busy,
    Unknown(i64),
}

/// Reads a `CHANNEL STATUS` result.
///
/// # Errors
/// [`ResultError`] when refused, or `-1` (no such channel).
pub fn channel_status(reply: Reply) -> Result<ChannelStatus, ResultError> {
    let outcome = success(reply)?;
    Ok(match outcome.result_number() {
        Some(0) => ChannelStatus::Down,
        Some(1) => ChannelStatus::Reserved,
        Some(2) => ChannelStatus::OffHook,
        Some(3) => ChannelStatus::Dialed,
        Some(4) => ChannelStatus::Ringing,
        Some(5) => ChannelStatus::Remoting,
        Some(6) => ChannelStatus::Up,
        Some(7) => ChannelStatus::Busy,
        Some(-1) => return Err(ResultError::Failed(outcome)),
        Some(n) => ChannelStatus::Unknown(n),
        None => return Err(ResultError::Unexpected(outcome)),
    })
}

/// Reads the many commands whose only result is `0` for success and `-1` for
/// failure (`ANSWER`, `SET VARIABLE`, `DATABASE PUT` returns `1`…): any `200` with a
/// non-negative result is success.
///
/// # Errors
/// [`ResultError`] when refused or negative.
pub fn done(reply: Reply) -> Result<Outcome, ResultError> {
    let outcome = success(reply)?;
    match outcome.result_number() {
        Some(n) if n < 0 => Err(ResultError::Failed(outcome)),
        _ => Ok(outcome),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agi::reply::{Inbound, ReplyLimits, parse_inbound};

    fn wire(c: Result<Command, CommandError>) -> String {
        String::from_utf8(c.unwrap().as_bytes().to_vec()).unwrap()
    }

    fn ok(c: Command) -> Result<Command, CommandError> {
        Ok(c)
    }

    #[test]
    fn every_command_of_asterisk_22_has_exact_wire_bytes() {
        let cs = ControlStream {
            skip_ms: None,
            forward_key: None,
            rewind_key: None,
            pause_key: Some("5"),
            offset_ms: None,
        };
        let table: Vec<(Result<Command, CommandError>, &str)> = vec![
            (ok(Command::answer()), "ANSWER\n"),
            (ok(Command::asyncagi_break()), "ASYNCAGI BREAK\n"),
            (Command::channel_status(None), "CHANNEL STATUS\n"),
            (
                Command::channel_status(Some("PJSIP/1-0001")),
                "CHANNEL STATUS \"PJSIP/1-0001\"\n",
            ),
            (
                Command::control_stream_file("welcome", "#", &ControlStream::default()),
                "CONTROL STREAM FILE \"welcome\" \"#\"\n",
            ),
            (
                Command::control_stream_file("welcome", "#", &cs),
                "CONTROL STREAM FILE \"welcome\" \"#\" 3000 \"#\" \"*\" \"5\"\n",
            ),
            (
                Command::database_del("fam", "key"),
                "DATABASE DEL \"fam\" \"key\"\n",
            ),
            (
                Command::database_deltree("fam", None),
                "DATABASE DELTREE \"fam\"\n",
            ),
            (
                Command::database_deltree("fam", Some("sub")),
                "DATABASE DELTREE \"fam\" \"sub\"\n",
            ),
            (
                Command::database_get("fam", "key"),
                "DATABASE GET \"fam\" \"key\"\n",
            ),
            (
                Command::database_put("fam", "key", "v v"),
                "DATABASE PUT \"fam\" \"key\" \"v v\"\n",
            ),
            (
                Command::exec("Playback", "hello,noanswer"),
                "EXEC \"Playback\" \"hello,noanswer\"\n",
            ),
            (
                Command::get_data("enter", None, None),
                "GET DATA \"enter\"\n",
            ),
            (
                Command::get_data("enter", None, Some(4)),
                "GET DATA \"enter\" 0 4\n",
            ),
            (
                Command::get_full_variable("${CALLERID(num)}", None),
                "GET FULL VARIABLE \"${CALLERID(num)}\"\n",
            ),
            (
                Command::get_full_variable("${X}", Some("Local/1@a-1;2")),
                "GET FULL VARIABLE \"${X}\" \"Local/1@a-1;2\"\n",
            ),
            (
                Command::get_option("menu", "123", Some(5000)),
                "GET OPTION \"menu\" \"123\" 5000\n",
            ),
            (Command::get_variable("X"), "GET VARIABLE \"X\"\n"),
            (
                Command::gosub("sub", "s", "1", Some("a,b")),
                "GOSUB \"sub\" \"s\" \"1\" \"a,b\"\n",
            ),
            (
                Command::gosub("sub", "s", "start", None),
                "GOSUB \"sub\" \"s\" \"start\"\n",
            ),
            (Command::hangup(None), "HANGUP\n"),
            (Command::hangup(Some("SIP/x")), "HANGUP \"SIP/x\"\n"),
            (ok(Command::noop()), "NOOP\n"),
            (ok(Command::receive_char(2000)), "RECEIVE CHAR 2000\n"),
            (ok(Command::receive_text(0)), "RECEIVE TEXT 0\n"),
            (
                Command::record_file("/tmp/r", "wav", "#", -1, RecordOptions::default()),
                "RECORD FILE \"/tmp/r\" \"wav\" \"#\" -1\n",
            ),
            (
                Command::record_file(
                    "/tmp/r",
                    "wav",
                    "#",
                    30000,
                    RecordOptions {
                        offset_samples: None,
                        beep: true,
                        silence_s: Some(3),
                    },
                ),
                "RECORD FILE \"/tmp/r\" \"wav\" \"#\" 30000 0 \"BEEP\" \"s=3\"\n",
            ),
            (Command::say_alpha("abc", ""), "SAY ALPHA \"abc\" \"\"\n"),
            (
                Command::say_date(1700000000, "#"),
                "SAY DATE 1700000000 \"#\"\n",
            ),
            (
                Command::say_datetime(1700000000, "", None, None),
                "SAY DATETIME 1700000000 \"\"\n",
            ),
            (
                Command::say_datetime(1700000000, "", None, Some("Europe/Moscow")),
                "SAY DATETIME 1700000000 \"\" \"ABdY 'digits/at' IMp\" \"Europe/Moscow\"\n",
            ),
            (
                Command::say_digits("0123", "#"),
                "SAY DIGITS \"0123\" \"#\"\n",
            ),
            (Command::say_number(-42, "", None), "SAY NUMBER -42 \"\"\n"),
            (
                Command::say_number(1, "", Some("f")),
                "SAY NUMBER 1 \"\" \"f\"\n",
            ),
            (
                Command::say_phonetic("Alpha", "*"),
                "SAY PHONETIC \"Alpha\" \"*\"\n",
            ),
            (Command::say_time(60, ""), "SAY TIME 60 \"\"\n"),
            (Command::send_image("logo"), "SEND IMAGE \"logo\"\n"),
            (
                Command::send_text("hi \"you\""),
                "SEND TEXT \"hi \\\"you\\\"\"\n",
            ),
            (ok(Command::set_autohangup(30)), "SET AUTOHANGUP 30\n"),
            (
                Command::set_callerid("\"Clinic\" <100>"),
                "SET CALLERID \"\\\"Clinic\\\" <100>\"\n",
            ),
            (Command::set_context("ctx"), "SET CONTEXT \"ctx\"\n"),
            (Command::set_extension("100"), "SET EXTENSION \"100\"\n"),
            (
                Command::set_music(Switch::On, Some("default")),
                "SET MUSIC on \"default\"\n",
            ),
            (Command::set_music(Switch::Off, None), "SET MUSIC off\n"),
            (Command::set_priority("3"), "SET PRIORITY \"3\"\n"),
            (
                Command::set_variable("A", "back\\slash"),
                "SET VARIABLE \"A\" \"back\\\\slash\"\n",
            ),
            (
                Command::speech_activate_grammar("g"),
                "SPEECH ACTIVATE GRAMMAR \"g\"\n",
            ),
            (Command::speech_create("lumen"), "SPEECH CREATE \"lumen\"\n"),
            (
                Command::speech_deactivate_grammar("g"),
                "SPEECH DEACTIVATE GRAMMAR \"g\"\n",
            ),
            (ok(Command::speech_destroy()), "SPEECH DESTROY\n"),
            (
                Command::speech_load_grammar("g", "/g.gram"),
                "SPEECH LOAD GRAMMAR \"g\" \"/g.gram\"\n",
            ),
            (
                Command::speech_recognize("beep", 5000, Some(8)),
                "SPEECH RECOGNIZE \"beep\" 5000 8\n",
            ),
            (Command::speech_set("k", "v"), "SPEECH SET \"k\" \"v\"\n"),
            (
                Command::speech_unload_grammar("g"),
                "SPEECH UNLOAD GRAMMAR \"g\"\n",
            ),
            (
                Command::stream_file("demo-congrats", "", None),
                "STREAM FILE \"demo-congrats\" \"\"\n",
            ),
            (
                Command::stream_file("x", "#", Some(800)),
                "STREAM FILE \"x\" \"#\" 800\n",
            ),
            (ok(Command::tdd_mode(TddMode::Mate)), "TDD MODE mate\n"),
            (Command::verbose("hello", 3), "VERBOSE \"hello\" 3\n"),
            (ok(Command::wait_for_digit(-1)), "WAIT FOR DIGIT -1\n"),
            (Command::custom("STREAM FILE", &[]), "STREAM FILE\n"),
            (
                Command::custom("NEW THING", &["a b", "Привет"]),
                "NEW THING \"a b\" \"Привет\"\n",
            ),
        ];
        for (command, expected) in table {
            assert_eq!(wire(command), expected);
        }
    }

    #[test]
    fn values_with_cr_lf_or_nul_cannot_be_built_into_a_command() {
        for bad in ["a\rb", "a\nb", "a\0b", "\n"] {
            assert!(matches!(
                Command::set_variable("X", bad),
                Err(CommandError::ForbiddenByte {
                    argument: "value",
                    ..
                })
            ));
            assert!(matches!(
                Command::custom("NOOP", &[bad]),
                Err(CommandError::ForbiddenByte { .. })
            ));
        }
        assert!(matches!(
            Command::get_variable("A\nNOOP"),
            Err(CommandError::ForbiddenByte {
                argument: "name",
                byte: b'\n'
            })
        ));
    }

    #[test]
    fn custom_names_and_overlong_lines_are_refused() {
        for name in ["", "NOOP\n", "A  B", "SET_VARIABLE", "a1", " NOOP"] {
            assert!(matches!(
                Command::custom(name, &[]),
                Err(CommandError::BadName { .. })
            ));
        }
        let long = "x".repeat(MAX_COMMAND_BYTES);
        assert!(matches!(
            Command::set_variable("X", &long),
            Err(CommandError::TooLong { .. })
        ));
    }

    fn reply(line: &str) -> Reply {
        match parse_inbound(line.as_bytes(), ReplyLimits::default())
            .unwrap()
            .unwrap()
            .0
        {
            Inbound::Reply(r) => r,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn typed_results_read_digits_values_endpos_and_timeouts() {
        assert_eq!(digit(reply("200 result=0\n")), Ok(None));
        assert_eq!(digit(reply("200 result=35\n")), Ok(Some('#')));
        assert!(matches!(
            digit(reply("200 result=-1\n")),
            Err(ResultError::Failed(_))
        ));
        assert!(matches!(
            digit(reply("511 Command Not Permitted on a dead channel\n")),
            Err(ResultError::Refused(Reply::DeadChannel(_)))
        ));
        assert_eq!(
            playback(reply("200 result=49 endpos=1600\n")),
            Ok(Playback {
                digit: Some('1'),
                endpos: Some(1600),
                failed: false
            })
        );
        assert_eq!(
            playback(reply("200 result=-1 endpos=320\n")),
            Ok(Playback {
                digit: None,
                endpos: Some(320),
                failed: true
            })
        );
        assert_eq!(
            data_input(reply("200 result=12* (timeout)\n")),
            Ok(DataInput {
                digits: "12*".into(),
                timed_out: true
            })
        );
        assert_eq!(
            data_input(reply("200 result=1234\n")),
            Ok(DataInput {
                digits: "1234".into(),
                timed_out: false
            })
        );
        assert_eq!(
            variable(reply("200 result=1 (a (b) c)\n")),
            Ok(Some(AgiText::from("a (b) c")))
        );
        assert_eq!(variable(reply("200 result=0\n")), Ok(None));
        let r = recording(reply("200 result=0 (timeout) endpos=8000\n")).unwrap();
        assert_eq!(r.reason, Some(AgiText::from("timeout")));
        assert_eq!(r.endpos, Some(8000));
        assert_eq!(
            channel_status(reply("200 result=6\n")),
            Ok(ChannelStatus::Up)
        );
        assert!(done(reply("200 result=0\n")).is_ok());
        assert!(done(reply("200 result=-1\n")).is_err());
    }
}
