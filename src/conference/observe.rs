//! AMI events read as the conference engine's observations, and its requests written as
//! AMI actions: the one place where the engine's words meet Asterisk's.
//!
//! Dialplan names (contexts, profiles, variables) come from [`Dialplan`]; the engine
//! never sees them. Every value reaches the wire through `ami::action`, which refuses
//! CR, LF and NUL.

use crate::ami::Message;
use crate::ami::action::{Action, ActionError, Originate, OriginateTarget};
use crate::conference::engine::{ChannelState, LiveChannel, Observation, Request, Role};

/// Channel variables medcall sets on every leg it originates; `manager.conf`
/// `channelvars` lists them so every event of the leg carries them.
pub const VAR_THREAD: &str = "MEDCALL_THREAD_ID";
pub const VAR_USER: &str = "MEDCALL_USER_ID";
pub const VAR_ROLE: &str = "MEDCALL_ROLE";
/// The conversation call a channel belongs to (`CallKey`): `calls::tracker` groups the
/// call's legs by it, so `/api/calls` shows the conversation call as one call.
pub const VAR_CALL_KEY: &str = "MEDCALL_CALL_KEY";
/// The ConfBridge user profile `medcall-conference` gives the leg.
pub const VAR_PROFILE: &str = "MEDCALL_USER_PROFILE";
/// The file a player leg's `;2` half plays (a path as Asterisk sees it, no extension).
pub const VAR_PLAY_FILE: &str = "MEDCALL_PLAY_FILE";

/// Where the dialplan joins and holds legs (from `[calls]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dialplan {
    /// Extension `<threadId>` of this context joins the thread's conference.
    pub conference_context: String,
    /// Extension `s` of this context holds a leg on music, out of the mix.
    pub hold_context: String,
    pub user_profile: String,
    /// The user profiles of medcall's own legs: the player (heard, hears nothing that
    /// matters) and the stream listener (muted, hears the mix).
    pub player_profile: String,
    pub listener_profile: String,
    /// The PBX's media directory as Asterisk sees it: players play
    /// `<dir>/play/<sha256>`, recordings go to `<dir>/recordings/<stem>.wav`.
    pub asterisk_media_dir: String,
    /// `CallerID` of originated legs; `None`: Asterisk's default.
    pub caller_id: Option<String>,
}

impl Dialplan {
    /// The ConfBridge user profile a leg of `role` joins with.
    pub fn profile(&self, role: Role) -> &str {
        match role {
            Role::Participant | Role::Caller => &self.user_profile,
            Role::Player => &self.player_profile,
            Role::Stream => &self.listener_profile,
        }
    }

    /// The file a player carrying `sha256` plays, without extension (Asterisk picks the
    /// `.sln16` medcall wrote).
    pub fn play_file(&self, sha256: &str) -> String {
        format!("{}/play/{sha256}", self.asterisk_media_dir)
    }

    /// Where the recording `stem` is written, as Asterisk sees it.
    pub fn recording_file(&self, stem: &str) -> String {
        format!("{}/recordings/{stem}.wav", self.asterisk_media_dir)
    }
}

/// The engine's observation in an AMI event, if the event is one it reads.
pub fn observation(m: &Message) -> Option<Observation> {
    let event = m.event()?;
    let text = |name: &str| m.get(name).and_then(|f| f.as_str()).map(str::to_owned);
    let uniqueid = || text("Uniqueid");
    let name = event.as_str()?;
    Some(match name {
        "OriginateResponse" => Observation::OriginateResponse {
            uniqueid: uniqueid()?,
            success: m.is("Response", "Success"),
            reason: text("Reason").and_then(|r| r.parse().ok()).unwrap_or(0),
            channel: text("Channel").filter(|c| !c.is_empty()),
        },
        "Newchannel" => Observation::Newchannel {
            uniqueid: uniqueid()?,
            channel: text("Channel")?,
        },
        "Newstate" => Observation::Newstate {
            uniqueid: uniqueid()?,
            state: match text("ChannelState").as_deref() {
                Some("5") => ChannelState::Ringing,
                Some("6") => ChannelState::Up,
                _ => ChannelState::Other,
            },
        },
        "ConfbridgeJoin" => Observation::ConfbridgeJoin {
            conference: text("Conference")?,
            uniqueid: uniqueid()?,
            channel: text("Channel")?,
        },
        "ConfbridgeLeave" => Observation::ConfbridgeLeave {
            conference: text("Conference")?,
            uniqueid: uniqueid()?,
        },
        "MusicOnHoldStart" => Observation::MusicOnHoldStart {
            uniqueid: uniqueid()?,
        },
        "MusicOnHoldStop" => Observation::MusicOnHoldStop {
            uniqueid: uniqueid()?,
        },
        "Hangup" => Observation::Hangup {
            uniqueid: uniqueid()?,
            cause: text("Cause").and_then(|c| c.parse().ok()).unwrap_or(0),
        },
        _ => return None,
    })
}

/// One `CoreShowChannel` item as a live channel.
pub fn live_channel(m: &Message) -> Option<LiveChannel> {
    let text = |name: &str| m.get(name).and_then(|f| f.as_str()).map(str::to_owned);
    Some(LiveChannel {
        uniqueid: text("Uniqueid")?,
        channel: text("Channel").unwrap_or_default(),
        up: text("ChannelState").as_deref() == Some("6"),
        application: text("Application").unwrap_or_default(),
    })
}

/// The AMI action for a request; `SweepAccount` is not one action (the control task
/// lists the channels and hangs up the thread's), so it has none.
///
/// # Errors
/// A value the action builders refuse (CR, LF or NUL): never for values the engine
/// made from validated ids and endpoints.
pub fn action(request: &Request, dialplan: &Dialplan) -> Result<Option<Action>, ActionError> {
    Ok(Some(match request {
        Request::Originate { leg, timeout } => {
            let thread = leg.call.thread.as_str();
            let target = OriginateTarget::Extension {
                context: dialplan.conference_context.clone(),
                exten: thread.to_string(),
                priority: 1,
            };
            let mut o = Originate::new(&leg.dial, &target)?
                .timeout(*timeout)?
                .asynchronous()?
                .account(thread)?
                .channel_id(&leg.uniqueid)?
                .variable(VAR_THREAD, thread)?
                .variable(VAR_CALL_KEY, &leg.call.to_string())?
                .variable(VAR_ROLE, leg.role.as_str())?
                .variable(VAR_PROFILE, dialplan.profile(leg.role))?;
            if let Some(other) = &leg.other_uniqueid {
                o = o.other_channel_id(other)?;
            }
            if let Some(user) = &leg.user {
                o = o.variable(VAR_USER, user.as_str())?;
            }
            if let (Role::Player, Some(sha256)) = (leg.role, &leg.media) {
                o = o.variable(VAR_PLAY_FILE, &dialplan.play_file(sha256))?;
            }
            if let Some(caller_id) = &dialplan.caller_id {
                o = o.caller_id(caller_id)?;
            }
            o.build()
        }
        Request::Hangup { uniqueid } => Action::hangup(uniqueid, Some(16))?,
        Request::Hold { uniqueid } => Action::redirect(uniqueid, &dialplan.hold_context, "s", 1)?,
        Request::Rejoin {
            uniqueid, thread, ..
        } => Action::redirect(uniqueid, &dialplan.conference_context, thread.as_str(), 1)?,
        Request::KickAll { thread } => Action::confbridge_kick(thread.as_str(), "all")?,
        Request::SweepAccount { .. } => return Ok(None),
        Request::StartRecord { thread, file_stem } => Action::confbridge_start_record(
            thread.as_str(),
            Some(&dialplan.recording_file(file_stem)),
        )?,
        Request::StopRecord { thread } => Action::confbridge_stop_record(thread.as_str())?,
    }))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::BytesMut;
    use chrono::Utc;

    use super::*;
    use crate::conference::engine::{CallKey, LegRecord, LegState, Role};

    fn msg(text: &str) -> Message {
        let pairs: Vec<(&str, &str)> = text.lines().filter_map(|l| l.split_once(": ")).collect();
        Message::from_pairs(&pairs)
    }

    fn dialplan() -> Dialplan {
        Dialplan {
            conference_context: "medcall-conference".into(),
            hold_context: "medcall-hold".into(),
            user_profile: "medcall_user".into(),
            player_profile: "medcall_player".into(),
            listener_profile: "medcall_listener".into(),
            asterisk_media_dir: "/var/spool/asterisk/medcall".into(),
            caller_id: Some("\"Clinic\" <100>".into()),
        }
    }

    fn wire(a: &Action) -> String {
        let mut out = BytesMut::new();
        a.write_with_id("x", &mut out);
        String::from_utf8(out.to_vec()).unwrap()
    }

    #[test]
    fn the_events_the_engine_reads_become_observations() {
        assert_eq!(
            observation(&msg(
                "Event: OriginateResponse\nResponse: Failure\nUniqueid: u-1\nReason: 5\nChannel: "
            )),
            Some(Observation::OriginateResponse {
                uniqueid: "u-1".into(),
                success: false,
                reason: 5,
                channel: None
            })
        );
        assert_eq!(
            observation(&msg(
                "Event: OriginateResponse\nResponse: Success\nUniqueid: u-1\nReason: 4\nChannel: Local/a@b-1;1"
            )),
            Some(Observation::OriginateResponse {
                uniqueid: "u-1".into(),
                success: true,
                reason: 4,
                channel: Some("Local/a@b-1;1".into())
            })
        );
        assert_eq!(
            observation(&msg(
                "Event: Newstate\nUniqueid: u-1\nChannelState: 5\nChannelStateDesc: Ringing"
            )),
            Some(Observation::Newstate {
                uniqueid: "u-1".into(),
                state: ChannelState::Ringing
            })
        );
        assert_eq!(
            observation(&msg("Event: Newstate\nUniqueid: u-1\nChannelState: 6")),
            Some(Observation::Newstate {
                uniqueid: "u-1".into(),
                state: ChannelState::Up
            })
        );
        assert_eq!(
            observation(&msg("Event: Newstate\nUniqueid: u-1\nChannelState: 4")),
            Some(Observation::Newstate {
                uniqueid: "u-1".into(),
                state: ChannelState::Other
            })
        );
        assert_eq!(
            observation(&msg(
                "Event: ConfbridgeJoin\nConference: t\nUniqueid: u-1\nChannel: C"
            )),
            Some(Observation::ConfbridgeJoin {
                conference: "t".into(),
                uniqueid: "u-1".into(),
                channel: "C".into()
            })
        );
        assert_eq!(
            observation(&msg("Event: ConfbridgeLeave\nConference: t\nUniqueid: u-1")),
            Some(Observation::ConfbridgeLeave {
                conference: "t".into(),
                uniqueid: "u-1".into()
            })
        );
        assert_eq!(
            observation(&msg("Event: Newchannel\nUniqueid: u-1\nChannel: C")),
            Some(Observation::Newchannel {
                uniqueid: "u-1".into(),
                channel: "C".into()
            })
        );
        assert_eq!(
            observation(&msg("Event: MusicOnHoldStart\nUniqueid: u-1")),
            Some(Observation::MusicOnHoldStart {
                uniqueid: "u-1".into()
            })
        );
        assert_eq!(
            observation(&msg("Event: MusicOnHoldStop\nUniqueid: u-1")),
            Some(Observation::MusicOnHoldStop {
                uniqueid: "u-1".into()
            })
        );
        assert_eq!(
            observation(&msg("Event: Hangup\nUniqueid: u-1\nCause: 17")),
            Some(Observation::Hangup {
                uniqueid: "u-1".into(),
                cause: 17
            })
        );
        assert_eq!(observation(&msg("Event: VarSet\nUniqueid: u-1")), None);
        assert_eq!(observation(&msg("Event: Hangup\nCause: 17")), None);
        assert_eq!(observation(&msg("Response: Success\nUniqueid: u-1")), None);
    }

    #[test]
    fn a_core_show_channel_item_is_a_live_channel() {
        assert_eq!(
            live_channel(&msg(
                "Event: CoreShowChannel\nUniqueid: u-1\nChannel: C\nChannelState: 6\nApplication: ConfBridge"
            )),
            Some(LiveChannel {
                uniqueid: "u-1".into(),
                channel: "C".into(),
                up: true,
                application: "ConfBridge".into()
            })
        );
        let ringing = live_channel(&msg(
            "Event: CoreShowChannel\nUniqueid: u-2\nChannelState: 5",
        ))
        .unwrap();
        assert!(!ringing.up);
        assert_eq!(
            live_channel(&msg("Event: CoreShowChannel\nChannel: C")),
            None
        );
    }

    #[test]
    fn an_invite_is_an_async_originate_into_the_threads_conference_with_its_tags() {
        let key = CallKey {
            thread: "5b0525134c0319001573485e".parse().unwrap(),
            started_ms: 1,
        };
        let leg = LegRecord {
            call: key.clone(),
            number: 3,
            role: Role::Participant,
            user: Some("5b4458eb1b2b33001bf213bf".parse().unwrap()),
            uniqueid: format!("{key}-3"),
            other_uniqueid: Some(format!("{key}-3-2")),
            channel: None,
            dial: "Local/5b4458eb1b2b33001bf213bf@dial-user/n".into(),
            state: LegState::Dialing,
            created_at: Utc::now(),
            answered_at: None,
            joined_at: None,
            ended_at: None,
            end_reason: None,
            hangup_cause: None,
            media: None,
        };
        let a = action(
            &Request::Originate {
                leg: Box::new(leg),
                timeout: Duration::from_secs(30),
            },
            &dialplan(),
        )
        .unwrap()
        .unwrap();
        let w = wire(&a);
        for line in [
            "Action: Originate\r\n",
            "Channel: Local/5b4458eb1b2b33001bf213bf@dial-user/n\r\n",
            "Context: medcall-conference\r\n",
            "Exten: 5b0525134c0319001573485e\r\n",
            "Priority: 1\r\n",
            "Timeout: 30000\r\n",
            "Async: true\r\n",
            "Account: 5b0525134c0319001573485e\r\n",
            "ChannelId: 5b0525134c0319001573485e-1-3\r\n",
            "OtherChannelId: 5b0525134c0319001573485e-1-3-2\r\n",
            "Variable: MEDCALL_THREAD_ID=5b0525134c0319001573485e\r\n",
            "Variable: MEDCALL_USER_ID=5b4458eb1b2b33001bf213bf\r\n",
            "Variable: MEDCALL_ROLE=participant\r\n",
            "Variable: MEDCALL_CALL_KEY=5b0525134c0319001573485e-1\r\n",
            "Variable: MEDCALL_USER_PROFILE=medcall_user\r\n",
            "CallerID: \"Clinic\" <100>\r\n",
        ] {
            assert!(w.contains(line), "{line:?} missing from\n{w}");
        }
    }

    #[test]
    fn hold_rejoin_hangup_and_kick_are_the_recipes_actions() {
        let thread: crate::directory::ThreadId = "5b0525134c0319001573485e".parse().unwrap();
        let d = dialplan();
        let w = |r: Request| wire(&action(&r, &d).unwrap().unwrap());
        let hold = w(Request::Hold {
            uniqueid: "u-1".into(),
        });
        assert!(hold.starts_with("Action: Redirect\r\n"));
        assert!(
            hold.contains("Channel: u-1\r\nContext: medcall-hold\r\nExten: s\r\nPriority: 1\r\n"),
            "{hold}"
        );
        let rejoin = w(Request::Rejoin {
            uniqueid: "u-1".into(),
            thread: thread.clone(),
            role: Role::Participant,
        });
        assert!(rejoin.starts_with("Action: Redirect\r\n"));
        assert!(rejoin.contains("Channel: u-1\r\nContext: medcall-conference\r\nExten: 5b0525134c0319001573485e\r\nPriority: 1\r\n"), "{rejoin}");
        let hangup = w(Request::Hangup {
            uniqueid: "u-1".into(),
        });
        assert!(hangup.starts_with("Action: Hangup\r\n"));
        assert!(hangup.contains("Channel: u-1\r\nCause: 16\r\n"), "{hangup}");
        let kick = w(Request::KickAll {
            thread: thread.clone(),
        });
        assert!(kick.starts_with("Action: ConfbridgeKick\r\n"));
        assert!(
            kick.contains("Conference: 5b0525134c0319001573485e\r\nChannel: all\r\n"),
            "{kick}"
        );
        assert_eq!(action(&Request::SweepAccount { thread }, &d).unwrap(), None);
    }

    #[test]
    fn helper_legs_join_with_their_profile_and_the_player_names_its_file() {
        let key = CallKey {
            thread: "5b0525134c0319001573485e".parse().unwrap(),
            started_ms: 1,
        };
        let leg = |role: Role, dial: &str, media: &str| LegRecord {
            call: key.clone(),
            number: 2,
            role,
            user: None,
            uniqueid: format!("{key}-2"),
            other_uniqueid: None,
            channel: None,
            dial: dial.into(),
            state: LegState::Dialing,
            created_at: Utc::now(),
            answered_at: None,
            joined_at: None,
            ended_at: None,
            end_reason: None,
            hangup_cause: None,
            media: Some(media.into()),
        };
        let d = dialplan();
        let wire_of = |l: LegRecord| {
            wire(
                &action(
                    &Request::Originate {
                        leg: Box::new(l),
                        timeout: Duration::from_secs(30),
                    },
                    &d,
                )
                .unwrap()
                .unwrap(),
            )
        };
        let player = wire_of(leg(Role::Player, "Local/s@medcall-play/n", "ab12"));
        assert!(
            player.contains("Variable: MEDCALL_USER_PROFILE=medcall_player\r\n"),
            "{player}"
        );
        assert!(
            player
                .contains("Variable: MEDCALL_PLAY_FILE=/var/spool/asterisk/medcall/play/ab12\r\n"),
            "{player}"
        );
        assert!(player.contains("Variable: MEDCALL_ROLE=player\r\n"));
        assert!(!player.contains("MEDCALL_USER_ID"));
        let stream = wire_of(leg(
            Role::Stream,
            "AudioSocket/127.0.0.1:9092/u/c(slin16)",
            "u",
        ));
        assert!(
            stream.contains("Variable: MEDCALL_USER_PROFILE=medcall_listener\r\n"),
            "{stream}"
        );
        assert!(
            !stream.contains("MEDCALL_PLAY_FILE"),
            "only players play: {stream}"
        );
        assert_eq!(d.profile(Role::Caller), "medcall_user");
        assert_eq!(d.profile(Role::Participant), "medcall_user");

        let thread: crate::directory::ThreadId = "5b0525134c0319001573485e".parse().unwrap();
        let start = wire(
            &action(
                &Request::StartRecord {
                    thread: thread.clone(),
                    file_stem: "5b0525134c0319001573485e-1-rec1".into(),
                },
                &d,
            )
            .unwrap()
            .unwrap(),
        );
        assert!(
            start.starts_with("Action: ConfbridgeStartRecord\r\n"),
            "{start}"
        );
        assert!(start.contains("Conference: 5b0525134c0319001573485e\r\n"));
        assert!(
            start.contains("RecordFile: /var/spool/asterisk/medcall/recordings/5b0525134c0319001573485e-1-rec1.wav\r\n"),
            "{start}"
        );
        let stop = wire(
            &action(&Request::StopRecord { thread }, &d)
                .unwrap()
                .unwrap(),
        );
        assert!(
            stop.starts_with("Action: ConfbridgeStopRecord\r\n"),
            "{stop}"
        );
        assert!(stop.contains("Conference: 5b0525134c0319001573485e\r\n"));
    }
}
