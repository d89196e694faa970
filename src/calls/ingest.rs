//! The ingest task: one per PBX. It feeds the AMI event stream through the
//! [`CallTracker`] and writes the resulting changes to the store in batches, so a burst
//! of events costs few commits; after every (re)connect, and whenever the stream says
//! events were dropped, it reconciles with `CoreShowChannels` and `ConfbridgeListRooms`.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::model::{CallChange, LegSnapshot};
use super::tracker::{CallTracker, EventFields};
use crate::ami::{Action, AmiClient, AmiEvent, EventStream, FieldReader, Message, MessageKind};
use crate::store::{LiveState, Store};

/// Most stream items folded into one transaction.
const MAX_BATCH_ITEMS: usize = 4096;

impl EventFields for FieldReader<'_> {
    fn field(&self, key: &str) -> Option<Cow<'_, str>> {
        self.text(key)
    }

    fn fields(&self, key: &str) -> Vec<Cow<'_, str>> {
        self.all_text(key)
    }
}

/// Counts of what one ingest task has done, for logs and tests.
#[derive(Debug, Default, Clone, Copy)]
pub struct IngestStats {
    pub events: u64,
    pub batches: u64,
    pub reconciliations: u64,
}

/// Batches waiting for the writer; past this the tracker waits (and the AMI queue absorbs).
const QUEUED_BATCHES: usize = 4;

/// Runs until `shutdown` is cancelled or the event stream ends; flushes what it holds
/// before returning. Tracking and writing run concurrently: while one batch commits,
/// the next is being built.
pub async fn run(
    pbx: String,
    client: AmiClient,
    events: EventStream,
    store: Store,
    shutdown: CancellationToken,
) {
    let live = match store.live_call_state(&pbx).await {
        Ok(live) => live,
        Err(e) => {
            tracing::error!(%pbx, error = %e, "cannot read live calls; call tracking is off for this PBX");
            return;
        }
    };
    let (batches, queued) = mpsc::channel(QUEUED_BATCHES);
    let tracking = track(pbx.clone(), client, events, live, batches, shutdown);
    let writing = write_batches(&store, &pbx, queued);
    let (stats, batches_written) = tokio::join!(tracking, writing);
    tracing::info!(%pbx, events = stats.events, batches = batches_written, "call tracking stopped");
}

async fn track(
    pbx: String,
    client: AmiClient,
    mut events: EventStream,
    live: LiveState,
    batches: mpsc::Sender<Vec<CallChange>>,
    shutdown: CancellationToken,
) -> IngestStats {
    // A daemon restart is a gap too: it began with the last event stored.
    let mut gap_started = live.last_event_at;
    let mut tracker = CallTracker::new(&pbx, live.calls, live.legs, live.conferences);
    let mut stats = IngestStats::default();
    let mut pending: Vec<CallChange> = Vec::new();
    // A reconciliation the PBX could not answer yet (just restarted, modules still
    // loading) is retried until it runs: when, and the gap it is for.
    let mut retry: Option<(Instant, Option<DateTime<Utc>>)> = None;
    loop {
        let wake = tokio::select! {
            _ = shutdown.cancelled() => None,
            item = events.recv() => item.map(Some),
            () = tokio::time::sleep_until(retry.map_or_else(Instant::now, |(at, _)| at)), if retry.is_some() => Some(None),
        };
        let Some(wake) = wake else { break };
        let mut item = match wake {
            Some(item) => Some(item),
            None => {
                if let Some((_, gap)) = retry.take() {
                    retry = reconcile_or_retry(&client, &mut tracker, &mut pending, gap).await;
                    stats.reconciliations += 1;
                }
                None
            }
        };
        let mut taken = 0;
        // The receive time of events without their own `Timestamp`: one clock read per
        // batch (a batch is what arrived together).
        let now = Utc::now();
        while let Some(current) = item.take() {
            taken += 1;
            match current {
                AmiEvent::Message(m) => {
                    if m.kind() == MessageKind::Event {
                        stats.events += 1;
                        tracker.track(&m.reader(), now);
                    }
                }
                AmiEvent::Connected { .. } => {
                    let gap = gap_started.take();
                    retry = reconcile_or_retry(&client, &mut tracker, &mut pending, gap).await;
                    stats.reconciliations += 1;
                }
                AmiEvent::Lagged { missed } => {
                    tracing::warn!(%pbx, missed, "call tracking missed events; reconciling with the PBX");
                    let gap = retry.take().map_or(Some(Utc::now()), |(_, gap)| gap);
                    retry = reconcile_or_retry(&client, &mut tracker, &mut pending, gap).await;
                    stats.reconciliations += 1;
                }
                AmiEvent::Disconnected { .. } => {
                    // A retry still owed keeps its (earlier) start; the next `Connected`
                    // reconciles.
                    let owed = retry.take().and_then(|(_, gap)| gap);
                    gap_started = gap_started.or(owed).or_else(|| Some(Utc::now()));
                }
            }
            if taken < MAX_BATCH_ITEMS {
                item = events.try_recv();
            }
        }
        pending.extend(tracker.take_changes());
        if !pending.is_empty() && batches.send(std::mem::take(&mut pending)).await.is_err() {
            break;
        }
    }
    pending.extend(tracker.take_changes());
    if !pending.is_empty() {
        let _ = batches.send(pending).await;
    }
    stats
}

/// Writes batches until the tracker is done; returns how many were written.
async fn write_batches(
    store: &Store,
    pbx: &str,
    mut queued: mpsc::Receiver<Vec<CallChange>>,
) -> u64 {
    let mut written = 0;
    while let Some(mut batch) = queued.recv().await {
        // Batches that queued up while the last one committed go into one transaction:
        // under load that is fewer commits (each an fsync and a rewrite of the same
        // index pages), and it adds no wait when the writer keeps up.
        while let Ok(more) = queued.try_recv() {
            batch.extend(more);
        }
        let n = batch.len();
        match store.apply_call_changes(batch).await {
            Ok(()) => written += 1,
            // The batch is lost; the next reconciliation repairs the live view.
            Err(e) => tracing::error!(%pbx, error = %e, changes = n, "writing call changes failed"),
        }
    }
    written
}

/// How long to wait before asking again when the PBX could not answer a reconciliation.
const RECONCILE_RETRY: Duration = Duration::from_secs(1);

/// Reconciles, or says when to try again (with the same gap) if the PBX could not answer.
async fn reconcile_or_retry(
    client: &AmiClient,
    tracker: &mut CallTracker,
    pending: &mut Vec<CallChange>,
    gap_started: Option<DateTime<Utc>>,
) -> Option<(Instant, Option<DateTime<Utc>>)> {
    if reconcile(client, tracker, pending, gap_started).await {
        None
    } else {
        Some((Instant::now() + RECONCILE_RETRY, gap_started))
    }
}

/// Asks the PBX what is live and lets the tracker close, adopt and record the gap.
/// Returns false, changing nothing, when the PBX could not say.
async fn reconcile(
    client: &AmiClient,
    tracker: &mut CallTracker,
    pending: &mut Vec<CallChange>,
    gap_started: Option<DateTime<Utc>>,
) -> bool {
    let now = Utc::now();
    let channels = match Action::core_show_channels() {
        Ok(action) => client.list(action).await,
        Err(e) => {
            tracing::error!(error = %e, "cannot build CoreShowChannels");
            return false;
        }
    };
    let channels = match channels {
        Ok(reply) => reply
            .items
            .iter()
            .filter_map(|m| snapshot_of(m, now))
            .collect::<Vec<_>>(),
        Err(e) => {
            // Without a snapshot nothing can be decided; the caller tries again.
            tracing::warn!(error = %e, "CoreShowChannels failed; reconciliation postponed");
            return false;
        }
    };
    let rooms = match Action::confbridge_list_rooms() {
        Ok(action) => match client.list(action).await {
            Ok(reply) => reply
                .items
                .iter()
                .filter_map(|m| m.text("Conference").map(Cow::into_owned))
                .collect::<Vec<_>>(),
            Err(e) => {
                tracing::warn!(error = %e, "ConfbridgeListRooms failed; reconciliation postponed");
                return false;
            }
        },
        Err(_) => return false,
    };
    let changes = tracker.reconcile(&channels, &rooms, gap_started, now);
    let (closed, adopted) = changes
        .iter()
        .find_map(|c| match c {
            CallChange::Gap(g) => Some((g.legs_closed, g.legs_adopted)),
            _ => None,
        })
        .unwrap_or_default();
    tracing::info!(
        channels = channels.len(),
        rooms = rooms.len(),
        closed,
        adopted,
        "reconciled with the PBX"
    );
    pending.extend(changes);
    true
}

/// A `CoreShowChannel` event as a snapshot of a live leg.
pub fn snapshot_of(m: &Message, now: DateTime<Utc>) -> Option<LegSnapshot> {
    let field = |k: &str| m.text(k).map(Cow::into_owned);
    let uniqueid = field("Uniqueid")?;
    let text = |k: &str| field(k).filter(|v| !v.is_empty() && v != "<unknown>");
    let mut variables = BTreeMap::new();
    for v in m.all("ChanVariable") {
        if let Some((k, val)) = v.text().split_once('=') {
            variables.insert(k.to_string(), val.to_string());
        }
    }
    let started_at = field("Duration")
        .and_then(|d| parse_hms(&d))
        .and_then(chrono::TimeDelta::try_seconds)
        .and_then(|age| now.checked_sub_signed(age));
    Some(LegSnapshot {
        linkedid: field("Linkedid").unwrap_or_else(|| uniqueid.clone()),
        uniqueid,
        channel: field("Channel").unwrap_or_default(),
        caller_num: text("CallerIDNum"),
        caller_name: text("CallerIDName"),
        state: text("ChannelStateDesc"),
        account_code: text("AccountCode"),
        context: text("Context"),
        exten: text("Exten"),
        bridge_id: text("BridgeId"),
        variables,
        started_at,
    })
}

/// `HH:MM:SS` → seconds; `None` for anything else, overflow included (the value comes
/// from the PBX).
fn parse_hms(s: &str) -> Option<i64> {
    let mut parts = s.split(':').map(|p| p.parse::<i64>().ok());
    let (h, m, sec) = (parts.next()??, parts.next()??, parts.next()??);
    h.checked_mul(3600)?
        .checked_add(m.checked_mul(60)?)?
        .checked_add(sec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_channel_duration_from_the_pbx_never_overflows() {
        assert_eq!(parse_hms("01:02:03"), Some(3723));
        assert_eq!(parse_hms("9223372036854775807:00:00"), None);
        assert_eq!(parse_hms("1:2"), None);
        let m = Message::from_pairs(&[
            ("Event", "CoreShowChannel"),
            ("Uniqueid", "1.0"),
            ("Duration", "2562047788015215:00:00"),
        ]);
        let snap = snapshot_of(&m, Utc::now()).unwrap();
        assert_eq!(snap.started_at, None);
    }

    #[test]
    fn a_core_show_channel_becomes_the_snapshot_of_a_live_leg() {
        let now = Utc::now();
        let m = Message::from_pairs(&[
            ("Event", "CoreShowChannel"),
            ("Channel", "PJSIP/reception-0000001a"),
            ("ChannelStateDesc", "Up"),
            ("CallerIDNum", "79001234567"),
            ("CallerIDName", "<unknown>"),
            ("AccountCode", ""),
            ("Context", "clinic-incoming"),
            ("Exten", "200"),
            ("Uniqueid", "1700000000.7"),
            ("Linkedid", "1700000000.5"),
            ("BridgeId", "br-1"),
            ("ChanVariable", "MEDCALL_CALL_ID=42"),
            ("ChanVariable", "NO_EQUALS_SIGN"),
            ("ChanVariable", "EMPTY="),
            ("Duration", "01:02:03"),
        ]);
        let snap = snapshot_of(&m, now).unwrap();
        assert_eq!(
            snap,
            LegSnapshot {
                uniqueid: "1700000000.7".into(),
                linkedid: "1700000000.5".into(),
                channel: "PJSIP/reception-0000001a".into(),
                caller_num: Some("79001234567".into()),
                caller_name: None,
                state: Some("Up".into()),
                account_code: None,
                context: Some("clinic-incoming".into()),
                exten: Some("200".into()),
                bridge_id: Some("br-1".into()),
                variables: BTreeMap::from([
                    ("EMPTY".into(), String::new()),
                    ("MEDCALL_CALL_ID".into(), "42".into()),
                ]),
                started_at: now.checked_sub_signed(chrono::TimeDelta::seconds(3723)),
            }
        );
        // Without a Linkedid the leg is its own call; without a Uniqueid it is nothing.
        let alone = Message::from_pairs(&[("Event", "CoreShowChannel"), ("Uniqueid", "1.9")]);
        let snap = snapshot_of(&alone, now).unwrap();
        assert_eq!((snap.linkedid.as_str(), snap.started_at), ("1.9", None));
        assert_eq!(
            snapshot_of(&Message::from_pairs(&[("Event", "CoreShowChannel")]), now),
            None
        );
    }
}
