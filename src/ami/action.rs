//! AMI actions: typed builders for the actions medcall sends, and a generic one.
//!
//! Owns the only way bytes get written to an AMI socket. Every name and value is checked
//! when the action is built — a CR, LF or NUL (which would end the line and let a value
//! inject headers or a whole action) is a typed [`ActionError`], so a built [`Action`]
//! is always safe to write. It never assigns `ActionID`s (the client does) and never
//! knows why an action is sent.

use std::fmt;
use std::time::Duration;

use bytes::{BufMut, BytesMut};

/// Why an action could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ActionError {
    #[error("AMI header `{field}` contains a {what}, which would end the line")]
    LineBreak { field: String, what: &'static str },
    #[error("AMI header name `{0}` is empty or contains `:` or a space")]
    BadName(String),
}

fn check_value(field: &str, value: &str) -> Result<(), ActionError> {
    let what = if value.contains('\r') {
        "carriage return"
    } else if value.contains('\n') {
        "line feed"
    } else if value.contains('\0') {
        "NUL"
    } else {
        return Ok(());
    };
    Err(ActionError::LineBreak {
        field: field.to_string(),
        what,
    })
}

fn check_name(name: &str) -> Result<(), ActionError> {
    if name.is_empty() || name.contains([':', ' ', '\t']) {
        return Err(ActionError::BadName(name.escape_default().to_string()));
    }
    check_value(name, name)
}

/// A checked action, ready to write. Built only through the constructors below, so no
/// name or value can break a line.
#[derive(Clone, PartialEq, Eq)]
pub struct Action {
    name: String,
    headers: Vec<(String, String)>,
    /// Indices of headers whose values must not be logged (secrets).
    secret: Option<usize>,
}

impl fmt::Debug for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Action");
        d.field("name", &self.name);
        for (i, (k, v)) in self.headers.iter().enumerate() {
            if self.secret == Some(i) {
                d.field(k, &"***");
            } else {
                d.field(k, v);
            }
        }
        d.finish()
    }
}

/// What `ControlPlayback` does to the playback in progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlaybackControl {
    Stop,
    Forward,
    Reverse,
    Pause,
    Restart,
}

impl PlaybackControl {
    fn as_str(self) -> &'static str {
        match self {
            PlaybackControl::Stop => "stop",
            PlaybackControl::Forward => "forward",
            PlaybackControl::Reverse => "reverse",
            PlaybackControl::Pause => "pause",
            PlaybackControl::Restart => "restart",
        }
    }
}

/// Which audio `MuteAudio` affects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MuteDirection {
    In,
    Out,
    All,
}

impl MuteDirection {
    fn as_str(self) -> &'static str {
        match self {
            MuteDirection::In => "in",
            MuteDirection::Out => "out",
            MuteDirection::All => "all",
        }
    }
}

impl Action {
    /// A generic action named `name` (`Action: name`).
    ///
    /// # Errors
    /// [`ActionError`] when the name is empty or holds CR, LF, NUL, `:` or a space.
    pub fn new(name: &str) -> Result<Action, ActionError> {
        check_name(name)?;
        check_value("Action", name)?;
        Ok(Action {
            name: name.to_string(),
            headers: Vec::new(),
            secret: None,
        })
    }

    /// Adds a header (repeats allowed, order kept).
    ///
    /// # Errors
    /// [`ActionError`] when the name is not a header name or the value holds CR, LF or NUL.
    pub fn header(mut self, name: &str, value: &str) -> Result<Action, ActionError> {
        check_name(name)?;
        check_value(name, value)?;
        if name.eq_ignore_ascii_case("ActionID") || name.eq_ignore_ascii_case("Action") {
            return Err(ActionError::BadName(format!(
                "{name} (set by the client, not by callers)"
            )));
        }
        self.headers.push((name.to_string(), value.to_string()));
        Ok(self)
    }

    fn opt_header(self, name: &str, value: Option<&str>) -> Result<Action, ActionError> {
        match value {
            Some(v) => self.header(name, v),
            None => Ok(self),
        }
    }

    /// The action's name, as sent in `Action:`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The first value of header `name`, if set.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The wire form with `ActionID: action_id`. The id must come from the client's own
    /// generator (digits, letters and `-`), so it needs no check here.
    pub fn write_with_id(&self, action_id: &str, out: &mut BytesMut) {
        out.put_slice(b"Action: ");
        out.put_slice(self.name.as_bytes());
        out.put_slice(b"\r\nActionID: ");
        out.put_slice(action_id.as_bytes());
        out.put_slice(b"\r\n");
        for (k, v) in &self.headers {
            out.put_slice(k.as_bytes());
            out.put_slice(b": ");
            out.put_slice(v.as_bytes());
            out.put_slice(b"\r\n");
        }
        out.put_slice(b"\r\n");
    }

    // ----- session -----

    /// `Login` with the secret in clear.
    ///
    /// # Errors
    /// [`ActionError`] when a value holds CR, LF or NUL.
    pub fn login_plain(username: &str, secret: &str, events: &str) -> Result<Action, ActionError> {
        let a = Action::new("Login")?
            .header("Username", username)?
            .header("Secret", secret)?;
        let secret = a.headers.len() - 1;
        let mut a = a.header("Events", events)?;
        a.secret = Some(secret);
        Ok(a)
    }

    /// `Challenge` with `AuthType: MD5`: asks for the nonce of an MD5 login.
    ///
    /// # Errors
    /// Never in practice; kept fallible like every builder.
    pub fn challenge_md5() -> Result<Action, ActionError> {
        Action::new("Challenge")?.header("AuthType", "MD5")
    }

    /// `Login` answering a challenge: `Key` is `md5hex(challenge + secret)`.
    ///
    /// # Errors
    /// [`ActionError`] when a value holds CR, LF or NUL.
    pub fn login_md5(
        username: &str,
        challenge: &str,
        secret: &str,
        events: &str,
    ) -> Result<Action, ActionError> {
        use md5::Digest;
        check_value("Challenge", challenge)?;
        let key = hex::encode(md5::Md5::digest(format!("{challenge}{secret}").as_bytes()));
        Action::new("Login")?
            .header("AuthType", "MD5")?
            .header("Username", username)?
            .header("Key", &key)?
            .header("Events", events)
    }

    /// `Logoff`.
    ///
    /// # Errors
    /// Never in practice.
    pub fn logoff() -> Result<Action, ActionError> {
        Action::new("Logoff")
    }

    /// `Ping`.
    ///
    /// # Errors
    /// Never in practice.
    pub fn ping() -> Result<Action, ActionError> {
        Action::new("Ping")
    }

    /// `Events`: changes the event mask (`on`, `off`, `call,cdr,…`).
    ///
    /// # Errors
    /// [`ActionError`] when the mask holds CR, LF or NUL.
    pub fn events(mask: &str) -> Result<Action, ActionError> {
        Action::new("Events")?.header("EventMask", mask)
    }

    /// `Command`: one CLI command; the reply's output comes back as lines.
    ///
    /// # Errors
    /// [`ActionError`] when the command holds CR, LF or NUL.
    pub fn command(command: &str) -> Result<Action, ActionError> {
        Action::new("Command")?.header("Command", command)
    }

    /// `CoreSettings`: the PBX's version and settings.
    ///
    /// # Errors
    /// Never in practice.
    pub fn core_settings() -> Result<Action, ActionError> {
        Action::new("CoreSettings")
    }

    // ----- channels -----

    /// `Hangup` of a channel (name, uniqueid, or `/regex/`), with an optional cause code.
    ///
    /// # Errors
    /// [`ActionError`] when the channel holds CR, LF or NUL.
    pub fn hangup(channel: &str, cause: Option<u16>) -> Result<Action, ActionError> {
        let a = Action::new("Hangup")?.header("Channel", channel)?;
        match cause {
            Some(c) => a.header("Cause", &c.to_string()),
            None => Ok(a),
        }
    }

    /// `Redirect` a channel to `context,exten,priority`.
    ///
    /// # Errors
    /// [`ActionError`] when a value holds CR, LF or NUL.
    pub fn redirect(
        channel: &str,
        context: &str,
        exten: &str,
        priority: u32,
    ) -> Result<Action, ActionError> {
        Action::new("Redirect")?
            .header("Channel", channel)?
            .header("Context", context)?
            .header("Exten", exten)?
            .header("Priority", &priority.to_string())
    }

    /// `Setvar`: a channel variable, or a global one when `channel` is `None`.
    ///
    /// # Errors
    /// [`ActionError`] when a value holds CR, LF or NUL.
    pub fn setvar(
        channel: Option<&str>,
        variable: &str,
        value: &str,
    ) -> Result<Action, ActionError> {
        Action::new("Setvar")?
            .opt_header("Channel", channel)?
            .header("Variable", variable)?
            .header("Value", value)
    }

    /// `Getvar`: a channel variable, or a global one when `channel` is `None`.
    ///
    /// # Errors
    /// [`ActionError`] when a value holds CR, LF or NUL.
    pub fn getvar(channel: Option<&str>, variable: &str) -> Result<Action, ActionError> {
        Action::new("Getvar")?
            .opt_header("Channel", channel)?
            .header("Variable", variable)
    }

    /// `CoreShowChannels` (a list action).
    ///
    /// # Errors
    /// Never in practice.
    pub fn core_show_channels() -> Result<Action, ActionError> {
        Action::new("CoreShowChannels")
    }

    /// `Status` of one channel or of all (a list action).
    ///
    /// # Errors
    /// [`ActionError`] when the channel holds CR, LF or NUL.
    pub fn status(channel: Option<&str>) -> Result<Action, ActionError> {
        Action::new("Status")?.opt_header("Channel", channel)
    }

    // ----- conferences -----

    /// `ConfbridgeList`: the users of a conference (a list action).
    ///
    /// # Errors
    /// [`ActionError`] when the name holds CR, LF or NUL.
    pub fn confbridge_list(conference: &str) -> Result<Action, ActionError> {
        Action::new("ConfbridgeList")?.header("Conference", conference)
    }

    /// `ConfbridgeListRooms`: every active conference (a list action).
    ///
    /// # Errors
    /// Never in practice.
    pub fn confbridge_list_rooms() -> Result<Action, ActionError> {
        Action::new("ConfbridgeListRooms")
    }

    /// `ConfbridgeKick`: `channel` is a full channel name, or `all`.
    ///
    /// # Errors
    /// [`ActionError`] when a value holds CR, LF or NUL.
    pub fn confbridge_kick(conference: &str, channel: &str) -> Result<Action, ActionError> {
        Action::new("ConfbridgeKick")?
            .header("Conference", conference)?
            .header("Channel", channel)
    }

    /// `ConfbridgeMute` (matches the channel name by prefix).
    ///
    /// # Errors
    /// [`ActionError`] when a value holds CR, LF or NUL.
    pub fn confbridge_mute(conference: &str, channel: &str) -> Result<Action, ActionError> {
        Action::new("ConfbridgeMute")?
            .header("Conference", conference)?
            .header("Channel", channel)
    }

    /// `ConfbridgeUnmute`.
    ///
    /// # Errors
    /// [`ActionError`] when a value holds CR, LF or NUL.
    pub fn confbridge_unmute(conference: &str, channel: &str) -> Result<Action, ActionError> {
        Action::new("ConfbridgeUnmute")?
            .header("Conference", conference)?
            .header("Channel", channel)
    }

    /// `ConfbridgeStartRecord`, to `record_file` or the profile's default file.
    ///
    /// # Errors
    /// [`ActionError`] when a value holds CR, LF or NUL.
    pub fn confbridge_start_record(
        conference: &str,
        record_file: Option<&str>,
    ) -> Result<Action, ActionError> {
        Action::new("ConfbridgeStartRecord")?
            .header("Conference", conference)?
            .opt_header("RecordFile", record_file)
    }

    /// `ConfbridgeStopRecord`.
    ///
    /// # Errors
    /// [`ActionError`] when the name holds CR, LF or NUL.
    pub fn confbridge_stop_record(conference: &str) -> Result<Action, ActionError> {
        Action::new("ConfbridgeStopRecord")?.header("Conference", conference)
    }

    // ----- media -----

    /// `MixMonitor` of one channel into `file`, with MixMonitor options (`b`, `r(…)`, …).
    ///
    /// # Errors
    /// [`ActionError`] when a value holds CR, LF or NUL.
    pub fn mix_monitor(
        channel: &str,
        file: &str,
        options: Option<&str>,
    ) -> Result<Action, ActionError> {
        Action::new("MixMonitor")?
            .header("Channel", channel)?
            .header("File", file)?
            .opt_header("Options", options)
    }

    /// `StopMixMonitor`.
    ///
    /// # Errors
    /// [`ActionError`] when the channel holds CR, LF or NUL.
    pub fn stop_mix_monitor(channel: &str) -> Result<Action, ActionError> {
        Action::new("StopMixMonitor")?.header("Channel", channel)
    }

    /// `ControlPlayback` of the playback running on `channel`.
    ///
    /// # Errors
    /// [`ActionError`] when the channel holds CR, LF or NUL.
    pub fn control_playback(
        channel: &str,
        control: PlaybackControl,
    ) -> Result<Action, ActionError> {
        Action::new("ControlPlayback")?
            .header("Channel", channel)?
            .header("Control", control.as_str())
    }

    /// `MuteAudio`: mutes (`true`) or unmutes a channel's audio in one direction.
    ///
    /// # Errors
    /// [`ActionError`] when the channel holds CR, LF or NUL.
    pub fn mute_audio(
        channel: &str,
        direction: MuteDirection,
        mute: bool,
    ) -> Result<Action, ActionError> {
        Action::new("MuteAudio")?
            .header("Channel", channel)?
            .header("Direction", direction.as_str())?
            .header("State", if mute { "on" } else { "off" })
    }
}

/// Where an originated call goes once the channel answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginateTarget {
    /// Dialplan: `Context`, `Exten`, `Priority`.
    Extension {
        context: String,
        exten: String,
        priority: u32,
    },
    /// An application: `Application`, `Data`.
    Application { application: String, data: String },
}

/// A builder for `Originate`. Every setter checks its value; [`Originate::build`]
/// returns the [`Action`].
#[derive(Debug, Clone)]
pub struct Originate {
    action: Action,
}

impl Originate {
    /// An `Originate` of `channel` (e.g. `Local/answer@fake-phones/n`) to `target`.
    ///
    /// # Errors
    /// [`ActionError`] when a value holds CR, LF or NUL.
    pub fn new(channel: &str, target: &OriginateTarget) -> Result<Originate, ActionError> {
        let a = Action::new("Originate")?.header("Channel", channel)?;
        let action = match target {
            OriginateTarget::Extension {
                context,
                exten,
                priority,
            } => a
                .header("Context", context)?
                .header("Exten", exten)?
                .header("Priority", &priority.to_string())?,
            OriginateTarget::Application { application, data } => {
                a.header("Application", application)?.header("Data", data)?
            }
        };
        Ok(Originate { action })
    }

    fn set(self, name: &str, value: &str) -> Result<Originate, ActionError> {
        Ok(Originate {
            action: self.action.header(name, value)?,
        })
    }

    /// How long the channel may ring (`Timeout`, in milliseconds on the wire).
    ///
    /// # Errors
    /// Never in practice.
    pub fn timeout(self, timeout: Duration) -> Result<Originate, ActionError> {
        let ms = timeout.as_millis().to_string();
        self.set("Timeout", &ms)
    }

    /// `Async: true`: the reply only says "queued"; the result is `OriginateResponse`.
    ///
    /// # Errors
    /// Never in practice.
    pub fn asynchronous(self) -> Result<Originate, ActionError> {
        self.set("Async", "true")
    }

    /// `CallerID`, e.g. `"Clinic" <100>`.
    ///
    /// # Errors
    /// [`ActionError`] when the value holds CR, LF or NUL.
    pub fn caller_id(self, caller_id: &str) -> Result<Originate, ActionError> {
        self.set("CallerID", caller_id)
    }

    /// `Account`: the `AccountCode` on every event and CDR of the leg.
    ///
    /// # Errors
    /// [`ActionError`] when the value holds CR, LF or NUL.
    pub fn account(self, account: &str) -> Result<Originate, ActionError> {
        self.set("Account", account)
    }

    /// `ChannelId`: the uniqueid of the new channel.
    ///
    /// # Errors
    /// [`ActionError`] when the value holds CR, LF or NUL.
    pub fn channel_id(self, id: &str) -> Result<Originate, ActionError> {
        self.set("ChannelId", id)
    }

    /// `OtherChannelId`: the uniqueid of a Local channel's second half.
    ///
    /// # Errors
    /// [`ActionError`] when the value holds CR, LF or NUL.
    pub fn other_channel_id(self, id: &str) -> Result<Originate, ActionError> {
        self.set("OtherChannelId", id)
    }

    /// One `Variable: name=value` (repeatable). The name must not contain `=`.
    ///
    /// # Errors
    /// [`ActionError`] when a value holds CR, LF or NUL, or the name holds `=`.
    pub fn variable(self, name: &str, value: &str) -> Result<Originate, ActionError> {
        if name.is_empty() || name.contains('=') {
            return Err(ActionError::BadName(format!("variable `{name}`")));
        }
        self.set("Variable", &format!("{name}={value}"))
    }

    pub fn build(self) -> Action {
        self.action
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(a: &Action) -> String {
        let mut out = BytesMut::new();
        a.write_with_id("t-1", &mut out);
        String::from_utf8(out.to_vec()).unwrap()
    }

    fn expect(a: Result<Action, ActionError>, lines: &[&str]) {
        let mut text = String::new();
        for l in lines {
            text.push_str(l);
            text.push_str("\r\n");
        }
        text.push_str("\r\n");
        assert_eq!(wire(&a.unwrap()), text);
    }

    #[test]
    fn every_action_has_its_exact_wire_form() {
        let id = "ActionID: t-1";
        expect(
            Action::login_plain("medcall", "s3", "on"),
            &[
                "Action: Login",
                id,
                "Username: medcall",
                "Secret: s3",
                "Events: on",
            ],
        );
        expect(
            Action::challenge_md5(),
            &["Action: Challenge", id, "AuthType: MD5"],
        );
        // md5("12345" + "secret")
        expect(
            Action::login_md5("medcall", "12345", "secret", "call,cdr"),
            &[
                "Action: Login",
                id,
                "AuthType: MD5",
                "Username: medcall",
                "Key: d6bf7523a8407696bb9448d0d0fecca8",
                "Events: call,cdr",
            ],
        );
        expect(Action::logoff(), &["Action: Logoff", id]);
        expect(Action::ping(), &["Action: Ping", id]);
        expect(
            Action::events("off"),
            &["Action: Events", id, "EventMask: off"],
        );
        expect(
            Action::command("core show version"),
            &["Action: Command", id, "Command: core show version"],
        );
        expect(Action::core_settings(), &["Action: CoreSettings", id]);
        expect(
            Action::hangup("1700000000.1", Some(16)),
            &["Action: Hangup", id, "Channel: 1700000000.1", "Cause: 16"],
        );
        expect(
            Action::hangup("/^Local/", None),
            &["Action: Hangup", id, "Channel: /^Local/"],
        );
        expect(
            Action::redirect("PJSIP/a-1", "hold", "s", 1),
            &[
                "Action: Redirect",
                id,
                "Channel: PJSIP/a-1",
                "Context: hold",
                "Exten: s",
                "Priority: 1",
            ],
        );
        expect(
            Action::setvar(Some("PJSIP/a-1"), "TAG", "x=y"),
            &[
                "Action: Setvar",
                id,
                "Channel: PJSIP/a-1",
                "Variable: TAG",
                "Value: x=y",
            ],
        );
        expect(
            Action::setvar(None, "G", ""),
            &["Action: Setvar", id, "Variable: G", "Value: "],
        );
        expect(
            Action::getvar(Some("c"), "TAG"),
            &["Action: Getvar", id, "Channel: c", "Variable: TAG"],
        );
        expect(
            Action::core_show_channels(),
            &["Action: CoreShowChannels", id],
        );
        expect(Action::status(None), &["Action: Status", id]);
        expect(
            Action::status(Some("c")),
            &["Action: Status", id, "Channel: c"],
        );
        expect(
            Action::confbridge_list("room-1"),
            &["Action: ConfbridgeList", id, "Conference: room-1"],
        );
        expect(
            Action::confbridge_list_rooms(),
            &["Action: ConfbridgeListRooms", id],
        );
        expect(
            Action::confbridge_kick("room-1", "all"),
            &[
                "Action: ConfbridgeKick",
                id,
                "Conference: room-1",
                "Channel: all",
            ],
        );
        expect(
            Action::confbridge_mute("room-1", "Local/a@x-0001;2"),
            &[
                "Action: ConfbridgeMute",
                id,
                "Conference: room-1",
                "Channel: Local/a@x-0001;2",
            ],
        );
        expect(
            Action::confbridge_unmute("room-1", "c"),
            &[
                "Action: ConfbridgeUnmute",
                id,
                "Conference: room-1",
                "Channel: c",
            ],
        );
        expect(
            Action::confbridge_start_record("room-1", Some("/tmp/r.wav")),
            &[
                "Action: ConfbridgeStartRecord",
                id,
                "Conference: room-1",
                "RecordFile: /tmp/r.wav",
            ],
        );
        expect(
            Action::confbridge_stop_record("room-1"),
            &["Action: ConfbridgeStopRecord", id, "Conference: room-1"],
        );
        expect(
            Action::mix_monitor("c", "/tmp/leg.wav", Some("b")),
            &[
                "Action: MixMonitor",
                id,
                "Channel: c",
                "File: /tmp/leg.wav",
                "Options: b",
            ],
        );
        expect(
            Action::stop_mix_monitor("c"),
            &["Action: StopMixMonitor", id, "Channel: c"],
        );
        expect(
            Action::control_playback("c", PlaybackControl::Stop),
            &["Action: ControlPlayback", id, "Channel: c", "Control: stop"],
        );
        expect(
            Action::mute_audio("c", MuteDirection::In, true),
            &[
                "Action: MuteAudio",
                id,
                "Channel: c",
                "Direction: in",
                "State: on",
            ],
        );
        expect(
            Action::new("UserEvent").and_then(|a| a.header("UserEvent", "Hello")),
            &["Action: UserEvent", id, "UserEvent: Hello"],
        );
    }

    #[test]
    fn originate_builds_every_option_in_order() {
        let a = Originate::new(
            "Local/answer@fake-phones/n",
            &OriginateTarget::Application {
                application: "Wait".into(),
                data: "10".into(),
            },
        )
        .and_then(|o| o.timeout(Duration::from_secs(20)))
        .and_then(Originate::asynchronous)
        .and_then(|o| o.caller_id("\"Clinic\" <100>"))
        .and_then(|o| o.account("thread-1"))
        .and_then(|o| o.channel_id("leg-1"))
        .and_then(|o| o.other_channel_id("leg-1b"))
        .and_then(|o| o.variable("A", "1"))
        .and_then(|o| o.variable("B", "x=y"))
        .map(Originate::build);
        expect(
            a,
            &[
                "Action: Originate",
                "ActionID: t-1",
                "Channel: Local/answer@fake-phones/n",
                "Application: Wait",
                "Data: 10",
                "Timeout: 20000",
                "Async: true",
                "CallerID: \"Clinic\" <100>",
                "Account: thread-1",
                "ChannelId: leg-1",
                "OtherChannelId: leg-1b",
                "Variable: A=1",
                "Variable: B=x=y",
            ],
        );
        let a = Originate::new(
            "Local/1@x/n",
            &OriginateTarget::Extension {
                context: "conf".into(),
                exten: "s".into(),
                priority: 1,
            },
        )
        .map(Originate::build);
        expect(
            a,
            &[
                "Action: Originate",
                "ActionID: t-1",
                "Channel: Local/1@x/n",
                "Context: conf",
                "Exten: s",
                "Priority: 1",
            ],
        );
    }

    #[test]
    fn values_with_cr_lf_or_nul_cannot_be_built_into_an_action() {
        for bad in ["a\r\nAction: Hangup", "a\nb", "a\rb", "a\0b"] {
            assert!(matches!(
                Action::hangup(bad, None),
                Err(ActionError::LineBreak { .. })
            ));
            assert!(Action::command(bad).is_err());
            assert!(Action::login_plain("u", bad, "on").is_err());
            assert!(
                Originate::new(
                    "c",
                    &OriginateTarget::Application {
                        application: "Wait".into(),
                        data: bad.into()
                    }
                )
                .is_err()
            );
        }
        assert!(matches!(
            Action::new("Ping").and_then(|a| a.header("X: y", "v")),
            Err(ActionError::BadName(_))
        ));
        assert!(
            Action::new("Ping")
                .and_then(|a| a.header("ActionID", "v"))
                .is_err()
        );
        assert!(Action::new("").is_err());
    }

    #[test]
    fn the_secret_never_shows_in_debug() {
        let a = Action::login_plain("medcall", "hunter2", "on").unwrap();
        assert!(!format!("{a:?}").contains("hunter2"));
    }
}
