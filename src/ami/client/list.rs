//! List actions (CoreShowChannels, Status, ConfbridgeList, ConfbridgeListRooms, Hangup
//! of a `/regex/`): their answer is a response, then item events, then a closing
//! `…Complete` event, all with the action's `ActionID`. Owns their collection (bounded
//! by `max_list_items`) and Asterisk's quirks: an empty ConfbridgeList/ListRooms is
//! answered with `Response: Error` and is an empty list, not a failure.
//!
//! Never touches the socket: the session hands it the messages of its `ActionID`.

use super::{AmiError, Reply, refuse_error};
use crate::ami::message::Message;

/// A list action's answer: the response, the items, and the closing `…Complete` event.
#[derive(Debug, Clone, Default)]
pub struct ListReply {
    /// `None` for an empty `ConfbridgeList`/`ConfbridgeListRooms` (answered with an error).
    pub response: Option<Message>,
    pub items: Vec<Message>,
    pub complete: Option<Message>,
}

/// One list answer being collected.
#[derive(Debug, Default)]
pub(super) struct ListCollector {
    response: Option<Message>,
    items: Vec<Message>,
}

impl ListCollector {
    /// Takes the action's response; `true` when it is the whole answer (an error, or a
    /// success that starts no event list).
    pub(super) fn response(&mut self, m: Message) -> bool {
        let done = !m.is("Response", "Success") || !m.is("EventList", "start");
        self.response = Some(m);
        done
    }

    /// Takes an item or the closing event; returns the outcome once the list is over
    /// (complete, or past `max_items`).
    pub(super) fn event(
        &mut self,
        m: Message,
        max_items: usize,
    ) -> Option<Result<ListReply, AmiError>> {
        let complete = m.is("EventList", "Complete")
            || m.event()
                .is_some_and(|e| e.as_bytes().ends_with(b"Complete"));
        if complete {
            Some(Ok(ListReply {
                response: self.response.take(),
                items: std::mem::take(&mut self.items),
                complete: Some(m),
            }))
        } else if self.items.len() >= max_items {
            Some(Err(AmiError::ListTooLong(max_items)))
        } else {
            self.items.push(m);
            None
        }
    }

    /// The answer as it stands, without a closing event.
    pub(super) fn finish(self) -> ListReply {
        ListReply {
            response: self.response,
            items: self.items,
            complete: None,
        }
    }
}

/// What [`super::AmiClient::list`] returns for the task's answer to `action`.
pub(super) fn list_answer(action: &str, reply: Reply) -> Result<ListReply, AmiError> {
    match reply {
        Reply::List(list) => match list.response {
            Some(m) if m.is("Response", "Error") => {
                if is_empty_list_error(&m) {
                    Ok(ListReply::default())
                } else {
                    refuse_error(action, m).map(|_| ListReply::default())
                }
            }
            _ => Ok(list),
        },
        Reply::Single(m) => refuse_error(action, m).map(|m| ListReply {
            response: Some(m),
            items: Vec::new(),
            complete: None,
        }),
    }
}

/// Asterisk's answer to a ConfbridgeList/ListRooms with nothing to list.
fn is_empty_list_error(m: &Message) -> bool {
    m.get("Message").is_some_and(|v| {
        v.eq_ignore_case("No active conferences.")
            || v.eq_ignore_case("No Conference by that name found.")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(text: &str) -> Message {
        crate::ami::parser::parse_frame(&bytes::Bytes::from(text.replace('\n', "\r\n"))).unwrap()
    }

    #[test]
    fn empty_confbridge_answers_are_recognised() {
        for text in [
            "Response: Error\nActionID: 1\nMessage: No active conferences.\n",
            "Response: Error\nActionID: 1\nMessage: no conference by that name found.\n",
        ] {
            let m = msg(text);
            assert!(is_empty_list_error(&m), "{text}");
            let list = list_answer(
                "ConfbridgeList",
                Reply::List(ListCollector::default().finish_with(m)),
            )
            .unwrap();
            assert!(list.response.is_none() && list.items.is_empty());
        }
        assert!(!is_empty_list_error(&msg(
            "Response: Error\nActionID: 1\nMessage: Permission denied\n"
        )));
    }

    #[test]
    fn other_list_errors_fail_with_the_message() {
        let m = msg("Response: Error\nActionID: 1\nMessage: Permission denied\n");
        let e = list_answer(
            "Status",
            Reply::List(ListCollector::default().finish_with(m)),
        )
        .unwrap_err();
        assert!(
            matches!(&e, AmiError::Failed { action, message, .. } if action == "Status" && message == "Permission denied"),
            "{e:?}"
        );
        let single = msg("Response: Error\nActionID: 1\nMessage: No\n");
        assert!(list_answer("Status", Reply::Single(single)).is_err());
        let ok = msg("Response: Success\nActionID: 1\n");
        let list = list_answer("Hangup", Reply::Single(ok)).unwrap();
        assert!(list.response.is_some() && list.items.is_empty() && list.complete.is_none());
    }

    #[test]
    fn a_list_collects_its_items_up_to_the_complete_event() {
        let mut c = ListCollector::default();
        assert!(!c.response(msg("Response: Success\nActionID: 1\nEventList: start\n")));
        for n in 0..3 {
            let item = msg(&format!("Event: CoreShowChannel\nActionID: 1\nN: {n}\n"));
            assert!(c.event(item, 10).is_none());
        }
        let done = c
            .event(
                msg("Event: CoreShowChannelsComplete\nActionID: 1\nEventList: Complete\n"),
                10,
            )
            .unwrap()
            .unwrap();
        assert!(done.response.is_some());
        assert_eq!(done.items.len(), 3);
        assert!(done.items[2].is("N", "2"));
        assert!(
            done.complete
                .unwrap()
                .is("Event", "CoreShowChannelsComplete")
        );
        // A closing event named `…Complete` without `EventList: Complete` closes too.
        let mut c = ListCollector::default();
        c.response(msg("Response: Success\nActionID: 1\nEventList: start\n"));
        assert!(
            c.event(msg("Event: StatusComplete\nActionID: 1\n"), 10)
                .is_some()
        );
    }

    #[test]
    fn a_response_without_an_event_list_is_the_whole_answer() {
        for (text, done) in [
            ("Response: Success\nActionID: 1\nEventList: start\n", false),
            ("Response: Success\nActionID: 1\n", true),
            ("Response: Error\nActionID: 1\nEventList: start\n", true),
        ] {
            assert_eq!(ListCollector::default().response(msg(text)), done, "{text}");
        }
    }

    #[test]
    fn a_list_longer_than_the_limit_fails_instead_of_growing() {
        let mut c = ListCollector::default();
        c.response(msg("Response: Success\nActionID: 1\nEventList: start\n"));
        assert!(c.event(msg("Event: Item\nActionID: 1\n"), 2).is_none());
        assert!(c.event(msg("Event: Item\nActionID: 1\n"), 2).is_none());
        let over = c.event(msg("Event: Item\nActionID: 1\n"), 2);
        assert!(
            matches!(over, Some(Err(AmiError::ListTooLong(2)))),
            "{over:?}"
        );
    }

    impl ListCollector {
        fn finish_with(mut self, response: Message) -> ListReply {
            self.response = Some(response);
            self.finish()
        }
    }
}
