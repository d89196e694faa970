//! What conference participants really hear, measured on the real rig with AudioSocket
//! participants (tones in, Goertzel out) driven by raw AMI only: the oracle for the
//! recipes the daemon copies — joining `medcall-conference`, pausing by `Redirect` to
//! `medcall-hold` and back (CALL-CONTROL.md §2.5, mode A), and hanging up by uniqueid.

use std::time::Duration;

use crate::support::audiosocket::{AudioSocketServer, MEASURE, Participant, fresh_uuid};
use crate::support::rig::{HangupOnDrop, RawAmi, RawMessage, Rig, field};

/// How long a tone may take to appear or vanish: mixing adds tens of milliseconds and
/// a measure needs `MEASURE`; seconds leave a wide margin on a loaded machine.
const SETTLE: Duration = Duration::from_secs(4);
/// Above this RMS (fraction of full scale) a participant hears more than silence.
/// Measured: music on hold reads 0.05–0.065 once faded in (0.018 over its first 250 ms),
/// an empty mix 0 (Asterisk sends no frames at all then).
const AUDIBLE_RMS: f64 = 0.01;

const A_HZ: f64 = 700.0;
const B_HZ: f64 = 1100.0;
const C_HZ: f64 = 1300.0;

/// A conference name nobody else (another test, an earlier run) uses.
fn conference_name(what: &str) -> String {
    format!("tone-{what}-{}", &fresh_uuid()[24..])
}

/// A logged-in raw AMI session on the rig.
async fn ami() -> RawAmi {
    let rig = Rig::from_env();
    let mut ami = RawAmi::connect(&rig).await;
    let login = ami.login(&rig.username, &rig.secret).await;
    assert_eq!(field(&login, "Response"), Some("Success"), "{login:?}");
    ami
}

/// One conference of AudioSocket participants, joined the way the daemon will join legs.
struct Conference {
    name: String,
    ami: RawAmi,
    hub: AudioSocketServer,
    uniqueids: Vec<String>,
    /// Every event seen so far, in arrival order (for reading the order afterwards).
    events: Vec<RawMessage>,
    _cleanup: HangupOnDrop,
}

impl Conference {
    async fn new(what: &str) -> Conference {
        Conference {
            name: conference_name(what),
            ami: ami().await,
            hub: AudioSocketServer::start().await,
            uniqueids: Vec::new(),
            events: Vec::new(),
            _cleanup: HangupOnDrop(Vec::new()),
        }
    }

    /// Originates one AudioSocket participant into the conference (the daemon's recipe),
    /// waits until its socket connected and its ConfbridgeJoin came.
    async fn join(&mut self, who: &str) -> (String, Participant) {
        let uid = format!("{}-{who}", self.name);
        let uuid = fresh_uuid();
        self.uniqueids.push(uid.clone());
        self._cleanup.0.push(uid.clone());
        let endpoint = self.hub.endpoint(&uuid);
        let name = self.name.clone();
        let from = self.events.len();
        self.ami
            .send(&[
                ("Action", "Originate"),
                ("Channel", &endpoint),
                ("Context", "medcall-conference"),
                ("Exten", &name),
                ("Priority", "1"),
                ("Async", "true"),
                ("Timeout", "5000"),
                ("ChannelId", &uid),
                ("Account", &name),
                ("ActionID", &uid),
            ])
            .await;
        let participant = self.hub.participant(&uuid).await;
        let join = self.event(from, &uid, "ConfbridgeJoin").await;
        assert_eq!(field(&join, "Conference"), Some(name.as_str()), "{join:?}");
        (uid, participant)
    }

    /// Waits (up to `SETTLE`) for the event `name` about the channel `uid`, kept at
    /// index `from` or later; every event read on the way is kept in `events`.
    async fn event(&mut self, from: usize, uid: &str, name: &str) -> RawMessage {
        self.event_where(from, name, |m| field(m, "Uniqueid") == Some(uid))
            .await
    }

    async fn event_where(
        &mut self,
        from: usize,
        name: &str,
        pred: impl Fn(&RawMessage) -> bool,
    ) -> RawMessage {
        if let Some(m) = self.events[from.min(self.events.len())..]
            .iter()
            .find(|m| field(m, "Event") == Some(name) && pred(m))
        {
            return m.clone();
        }
        let deadline = tokio::time::Instant::now() + SETTLE;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let m = self.ami.next(left).await.unwrap_or_else(|| {
                panic!(
                    "no {name} within {SETTLE:?}; events: {:#?}",
                    self.names_about(None)
                )
            });
            let hit = field(&m, "Event") == Some(name) && pred(&m);
            self.events.push(m.clone());
            if hit {
                return m;
            }
        }
    }

    /// An action's response (by ActionID), events read on the way kept.
    async fn action(&mut self, id: &str, lines: &[(&str, &str)]) -> RawMessage {
        let mut all = lines.to_vec();
        all.push(("ActionID", id));
        self.ami.send(&all).await;
        let deadline = tokio::time::Instant::now() + SETTLE;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let m = self.ami.next(left).await.expect("an answer to the action");
            if field(&m, "ActionID") == Some(id) && field(&m, "Response").is_some() {
                return m;
            }
            self.events.push(m);
        }
    }

    /// The names of the kept events about `uid` (all the test's channels when `None`),
    /// in order, with the channel they are about.
    fn names_about(&self, uid: Option<&str>) -> Vec<String> {
        self.events
            .iter()
            .filter(|m| match uid {
                Some(u) => field(m, "Uniqueid") == Some(u),
                None => field(m, "Uniqueid")
                    .is_some_and(|u| self.uniqueids.iter().any(|mine| mine == u)),
            })
            .map(|m| {
                format!(
                    "{} {}",
                    field(m, "Event").unwrap_or("?"),
                    field(m, "Uniqueid").unwrap_or("?")
                )
            })
            .collect()
    }

    /// The live channels `CoreShowChannels` lists.
    async fn channels(&mut self) -> Vec<RawMessage> {
        let id = format!("{}-show-{}", self.name, fresh_uuid());
        let response = self.action(&id, &[("Action", "CoreShowChannels")]).await;
        assert_eq!(
            field(&response, "Response"),
            Some("Success"),
            "{response:?}"
        );
        let mut items = Vec::new();
        let deadline = tokio::time::Instant::now() + SETTLE;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let m = self.ami.next(left).await.expect("the channel list");
            if field(&m, "ActionID") != Some(id.as_str()) {
                self.events.push(m);
                continue;
            }
            match field(&m, "Event") {
                Some("CoreShowChannel") => items.push(m),
                Some("CoreShowChannelsComplete") => return items,
                _ => {}
            }
        }
    }
}

/// Levels a participant hears now, for failure messages and the record of what was seen.
fn levels(p: &Participant) -> String {
    format!(
        "700 Hz {:.4}, 1100 Hz {:.4}, 1300 Hz {:.4}, rms {:.4}",
        p.level_at(A_HZ, MEASURE),
        p.level_at(B_HZ, MEASURE),
        p.level_at(C_HZ, MEASURE),
        p.rms(MEASURE)
    )
}

#[tokio::test]
async fn two_audiosocket_participants_in_one_conference_hear_each_other_but_not_themselves() {
    let mut conf = Conference::new("pair").await;
    let (_, a) = conf.join("a").await;
    let (_, b) = conf.join("b").await;

    a.play_tone(A_HZ);
    assert!(
        b.wait_for_tone(A_HZ, SETTLE).await,
        "B never heard A's 700 Hz: {}",
        levels(&b)
    );
    println!(
        "A plays 700 Hz. B hears {}; A hears {}",
        levels(&b),
        levels(&a)
    );

    // Both talk: each one's mix carries the other's tone and not its own (ConfBridge
    // mixes for each participant everyone but that participant).
    b.play_tone(B_HZ);
    assert!(
        a.wait_for_tone(B_HZ, SETTLE).await,
        "A never heard B's 1100 Hz: {}",
        levels(&a)
    );
    assert!(
        a.wait_until_tone_absent(A_HZ, SETTLE).await,
        "A hears its own tone: {}",
        levels(&a)
    );
    assert!(
        b.wait_until_tone_absent(B_HZ, SETTLE).await,
        "B hears its own tone: {}",
        levels(&b)
    );
    assert!(
        b.wait_for_tone(A_HZ, SETTLE).await,
        "B lost A's tone: {}",
        levels(&b)
    );
    println!("both play. A hears {}; B hears {}", levels(&a), levels(&b));

    // A falls silent: its tone leaves B's mix.
    a.silence();
    assert!(
        b.wait_until_tone_absent(A_HZ, SETTLE).await,
        "B still hears 700 Hz after A fell silent: {}",
        levels(&b)
    );
    assert!(
        a.wait_for_tone(B_HZ, SETTLE).await,
        "A lost B: {}",
        levels(&a)
    );
}

#[tokio::test]
async fn a_participant_redirected_to_medcall_hold_leaves_the_mix_hears_music_and_rejoins_on_redirect_back()
 {
    let mut conf = Conference::new("pause").await;
    let (a_uid, a) = conf.join("a").await;
    let (_, b) = conf.join("b").await;
    let (_, c) = conf.join("c").await;
    a.play_tone(A_HZ);
    b.play_tone(B_HZ);
    c.play_tone(C_HZ);
    for (who, p, hz) in [
        ("B", &b, A_HZ),
        ("C", &c, A_HZ),
        ("A", &a, B_HZ),
        ("A", &a, C_HZ),
    ] {
        assert!(
            p.wait_for_tone(hz, SETTLE).await,
            "{who} never heard {hz} Hz before the pause: {}",
            levels(p)
        );
    }
    println!("joined. A hears {}; B hears {}", levels(&a), levels(&b));

    // Pause: the daemon's recipe, by uniqueid.
    let before_pause = conf.events.len();
    let redirect = conf
        .action(
            &format!("{a_uid}-pause"),
            &[
                ("Action", "Redirect"),
                ("Channel", &a_uid),
                ("Context", "medcall-hold"),
                ("Exten", "s"),
                ("Priority", "1"),
            ],
        )
        .await;
    assert_eq!(
        field(&redirect, "Response"),
        Some("Success"),
        "{redirect:?}"
    );
    let leave = conf.event(before_pause, &a_uid, "ConfbridgeLeave").await;
    assert_eq!(field(&leave, "Conference"), Some(conf.name.as_str()));
    let moh = conf.event(before_pause, &a_uid, "MusicOnHoldStart").await;
    assert_eq!(field(&moh, "Class"), Some("default"));

    for (who, p) in [("B", &b), ("C", &c)] {
        assert!(
            p.wait_until_tone_absent(A_HZ, SETTLE).await,
            "{who} still hears paused A: {}",
            levels(p)
        );
    }
    for hz in [B_HZ, C_HZ] {
        assert!(
            a.wait_until_tone_absent(hz, SETTLE).await,
            "paused A still hears {hz} Hz: {}",
            levels(&a)
        );
    }
    // B and C still hear each other: the conference goes on without A.
    assert!(
        b.wait_for_tone(C_HZ, SETTLE).await,
        "B lost C: {}",
        levels(&b)
    );
    // Music on hold fades in from silence: wait until it is well above silence.
    assert!(
        a.wait_for_rms(AUDIBLE_RMS, MEASURE, SETTLE).await,
        "paused A hears no music: {}",
        levels(&a)
    );
    println!("paused. A hears {}; B hears {}", levels(&a), levels(&b));

    // Unpause: back into the same conference.
    let before_unpause = conf.events.len();
    let back = conf
        .action(
            &format!("{a_uid}-unpause"),
            &[
                ("Action", "Redirect"),
                ("Channel", &a_uid),
                ("Context", "medcall-conference"),
                ("Exten", &conf.name.clone()),
                ("Priority", "1"),
            ],
        )
        .await;
    assert_eq!(field(&back, "Response"), Some("Success"), "{back:?}");
    let rejoin = conf.event(before_unpause, &a_uid, "ConfbridgeJoin").await;
    assert_eq!(field(&rejoin, "Conference"), Some(conf.name.as_str()));
    conf.event(before_unpause, &a_uid, "MusicOnHoldStop").await;
    for (who, p) in [("B", &b), ("C", &c)] {
        assert!(
            p.wait_for_tone(A_HZ, SETTLE).await,
            "{who} never heard A again after the unpause: {}",
            levels(p)
        );
    }
    assert!(
        a.wait_for_tone(B_HZ, SETTLE).await,
        "A never heard B again: {}",
        levels(&a)
    );
    println!("unpaused. A hears {}; B hears {}", levels(&a), levels(&b));

    // What the daemon may rely on. Each Redirect brings its pair of events, but within a
    // pair the order varies from run to run (ConfBridge and music on hold publish on
    // different topics): seen Leave→Start and Start→Leave, Stop→Join and Join→Stop. So
    // a pause is confirmed by both ConfbridgeLeave and MusicOnHoldStart, an unpause by
    // ConfbridgeJoin (the music stopping is not the rejoin). The Leave of a paused leg
    // is no hangup and does not end the conference.
    let phase = |events: &[RawMessage]| -> Vec<String> {
        let mut names: Vec<String> = events
            .iter()
            .filter(|m| field(m, "Uniqueid") == Some(a_uid.as_str()))
            .filter_map(|m| field(m, "Event"))
            .filter(|e| {
                matches!(
                    *e,
                    "ConfbridgeLeave"
                        | "ConfbridgeJoin"
                        | "MusicOnHoldStart"
                        | "MusicOnHoldStop"
                        | "Hangup"
                )
            })
            .map(str::to_string)
            .collect();
        names.sort();
        names
    };
    println!("A's events: {:?}", conf.names_about(Some(&a_uid)));
    assert_eq!(
        phase(&conf.events[before_pause..before_unpause]),
        ["ConfbridgeLeave", "MusicOnHoldStart"],
        "{:#?}",
        conf.names_about(Some(&a_uid))
    );
    assert_eq!(
        phase(&conf.events[before_unpause..]),
        ["ConfbridgeJoin", "MusicOnHoldStop"],
        "{:#?}",
        conf.names_about(Some(&a_uid))
    );
    let name = conf.name.clone();
    assert!(
        !conf
            .events
            .iter()
            .any(|m| field(m, "Event") == Some("ConfbridgeEnd")
                && field(m, "Conference") == Some(&name)),
        "the conference ended while A was paused"
    );
}

#[tokio::test]
async fn hanging_up_every_participant_by_uniqueid_leaves_no_channel_and_ends_the_conference() {
    let mut conf = Conference::new("hangup").await;
    let (a_uid, a) = conf.join("a").await;
    let (b_uid, b) = conf.join("b").await;
    let account = conf.name.clone();
    let listed = conf.channels().await;
    for uid in [&a_uid, &b_uid] {
        let item = listed
            .iter()
            .find(|m| field(m, "Uniqueid") == Some(uid.as_str()))
            .unwrap_or_else(|| panic!("{uid} not listed: {listed:#?}"));
        assert_eq!(
            field(item, "AccountCode"),
            Some(account.as_str()),
            "{item:?}"
        );
        assert_eq!(field(item, "Application"), Some("ConfBridge"), "{item:?}");
    }

    for uid in [a_uid.clone(), b_uid.clone()] {
        let r = conf
            .action(
                &format!("{uid}-hangup"),
                &[("Action", "Hangup"), ("Channel", &uid)],
            )
            .await;
        assert_eq!(field(&r, "Response"), Some("Success"), "{r:?}");
        conf.event(0, &uid, "Hangup").await;
    }
    let name = conf.name.clone();
    conf.event_where(0, "ConfbridgeEnd", |m| {
        field(m, "Conference") == Some(name.as_str())
    })
    .await;
    assert!(a.wait_closed(SETTLE).await, "A's socket stayed open");
    assert!(b.wait_closed(SETTLE).await, "B's socket stayed open");

    let left: Vec<RawMessage> = conf
        .channels()
        .await
        .into_iter()
        .filter(|m| {
            field(m, "AccountCode") == Some(account.as_str())
                || field(m, "Uniqueid").is_some_and(|u| u.starts_with(&account))
        })
        .collect();
    assert!(left.is_empty(), "channels left: {left:#?}");
}
