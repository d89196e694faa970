//! The CRM's rules for requests (заявки): a lead becomes a request once, an incoming
//! call finds or makes its client and reuses the client's open request, and a patient's
//! arrival keeps its first mark.
//!
//! Each rule is a pure function from the facts `store::crm` loaded (plain values) to a
//! plan it then writes, all in one transaction on the store thread; the rules are tested
//! here without SQLite. This module must never read or write the store itself, and never
//! ask the clock: a time it needs is given.

use chrono::{DateTime, Utc};

use super::{Client, IncomingCall, PhoneNumber, Request, RequestSource};

/// The number a caller is known by in the CRM: the caller id if it is a (Russian) phone
/// number. The store looks the client up by it; the rules below decide with it.
pub fn caller_phone(caller: Option<&str>) -> Option<PhoneNumber> {
    caller.and_then(|c| PhoneNumber::parse(c).ok())
}

/// What the store knows of a call's caller.
#[derive(Debug, Clone, PartialEq)]
pub struct CallerFacts {
    /// The caller's number as the PBX gave it (the inbound record's, else the first leg's).
    pub caller: Option<String>,
    /// The client owning [`caller_phone`] (the lowest client id when several do).
    pub owner: Option<Client>,
}

/// The client a call is filed under.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientPlan {
    /// The caller id is not a phone number: no client.
    None,
    /// The client owning the caller's number.
    Existing(Client),
    /// Nobody owns the number: a new client with it as their one phone.
    Create(PhoneNumber),
}

impl ClientPlan {
    fn for_caller(facts: &CallerFacts) -> ClientPlan {
        match (caller_phone(facts.caller.as_deref()), &facts.owner) {
            (None, _) => ClientPlan::None,
            (Some(_), Some(owner)) => ClientPlan::Existing(owner.clone()),
            (Some(phone), None) => ClientPlan::Create(phone),
        }
    }
}

/// A lead (`/api/events?text=` or `?call=`) and what the store knows of it.
#[derive(Debug, Clone, PartialEq)]
pub enum LeadFacts {
    Text {
        lead: i64,
        /// The request already made from this lead.
        existing: Option<Request>,
    },
    Call {
        call_id: i64,
        /// The request already made from this call.
        existing: Option<Request>,
        /// `None` when medcall knows no such call.
        call: Option<CallerFacts>,
    },
}

/// What to do with a lead.
#[derive(Debug, Clone, PartialEq)]
pub enum LeadPlan {
    /// The lead's request exists: answer it, write nothing.
    Existing(Request),
    /// A call lead for a call medcall does not know: write nothing.
    UnknownCall,
    /// Make the lead's request, filed under `client` (made first if planned so).
    Create {
        source: RequestSource,
        source_id: i64,
        client: ClientPlan,
    },
}

/// A lead becomes one request, once: a repeated lead answers the request made the first
/// time (even when that call is no longer known). A text lead's request has no client; a
/// call's is filed under the caller's client, made for the number if nobody owns it.
pub fn lead(facts: LeadFacts) -> LeadPlan {
    match facts {
        LeadFacts::Text {
            existing: Some(r), ..
        }
        | LeadFacts::Call {
            existing: Some(r), ..
        } => LeadPlan::Existing(r),
        LeadFacts::Text {
            lead,
            existing: None,
        } => LeadPlan::Create {
            source: RequestSource::Text,
            source_id: lead,
            client: ClientPlan::None,
        },
        LeadFacts::Call { call: None, .. } => LeadPlan::UnknownCall,
        LeadFacts::Call {
            call_id,
            existing: None,
            call: Some(call),
        } => LeadPlan::Create {
            source: RequestSource::Call,
            source_id: call_id,
            client: ClientPlan::for_caller(&call),
        },
    }
}

/// What `call_asterisk` did for a call the first time, as recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedIncoming {
    pub event_id: i64,
    pub client: Option<Client>,
    pub request: Option<Request>,
}

/// What the store knows of a call `call_asterisk` is asked to process.
#[derive(Debug, Clone, PartialEq)]
pub struct IncomingCallFacts {
    pub call_id: i64,
    /// `None` when medcall knows no such call.
    pub call: Option<CallerFacts>,
    /// The incoming-call event of an earlier processing of this call.
    pub recorded: Option<RecordedIncoming>,
    /// The owner's newest open request.
    pub open_request: Option<Request>,
    /// The request made from this call (`/api/events?call=`).
    pub call_request: Option<Request>,
}

/// The request an incoming call is linked to.
#[derive(Debug, Clone, PartialEq)]
pub enum RequestChoice {
    Reuse(Request),
    /// A new request from this call, filed under the plan's client.
    CreateFromCall,
}

/// What to do with an incoming call.
#[derive(Debug, Clone, PartialEq)]
pub enum IncomingCallPlan {
    UnknownCall,
    /// Processed before: answer what was done then (nothing created now), write nothing.
    Repeat(IncomingCall),
    /// The first processing: make what the plan says, then record the incoming-call event.
    Record {
        client: ClientPlan,
        request: RequestChoice,
    },
}

/// `call_asterisk`: the caller's client is found by number or made; the call is linked to
/// the client's newest open request, else to the request made from this call, else to a
/// new one. Idempotent per call: a call processed before answers its first result.
pub fn incoming_call(facts: IncomingCallFacts) -> IncomingCallPlan {
    let Some(call) = facts.call else {
        return IncomingCallPlan::UnknownCall;
    };
    if let Some(done) = facts.recorded {
        return IncomingCallPlan::Repeat(IncomingCall {
            call_id: facts.call_id,
            caller: call.caller,
            client: done.client,
            client_created: false,
            request: done.request,
            request_created: false,
            event_id: done.event_id,
        });
    }
    let client = ClientPlan::for_caller(&call);
    // A client made now has no requests yet, whatever was loaded.
    let open = match client {
        ClientPlan::Existing(_) => facts.open_request,
        ClientPlan::None | ClientPlan::Create(_) => None,
    };
    let request = match open.or(facts.call_request) {
        Some(r) => RequestChoice::Reuse(r),
        None => RequestChoice::CreateFromCall,
    };
    IncomingCallPlan::Record { client, request }
}

/// What to do when a patient is reported arrived.
#[derive(Debug, Clone, PartialEq)]
pub enum ArrivalPlan {
    UnknownRequest,
    /// Marked before: the first mark is kept, nothing is written.
    AlreadyArrived(Request),
    /// Write this request's arrival (`arrived_at` set).
    Mark(Request),
}

/// `/api/events/coming`: the first arrival mark of a request is kept; `now` is when
/// this one was reported.
pub fn arrival(request: Option<Request>, now: DateTime<Utc>) -> ArrivalPlan {
    match request {
        None => ArrivalPlan::UnknownRequest,
        Some(r) if r.arrived_at.is_some() => ArrivalPlan::AlreadyArrived(r),
        Some(r) => ArrivalPlan::Mark(Request {
            arrived_at: Some(now),
            ..r
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crm::RequestStatus;

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
    }

    fn request(id: i64, source: RequestSource, client_id: Option<i64>) -> Request {
        Request {
            id,
            source,
            source_id: id,
            client_id,
            status: RequestStatus::Open,
            created: at(0),
            arrived_at: None,
        }
    }

    fn client(id: i64) -> Client {
        Client {
            id,
            full_name: None,
            phones: vec!["79001234567".into()],
        }
    }

    fn caller(number: Option<&str>, owner: Option<Client>) -> CallerFacts {
        CallerFacts {
            caller: number.map(str::to_string),
            owner,
        }
    }

    fn phone(text: &str) -> PhoneNumber {
        PhoneNumber::parse(text).unwrap()
    }

    #[test]
    fn callers_are_known_by_their_number_only_when_it_is_a_phone() {
        let cases = [
            (None, None),
            (Some(""), None),
            (Some("100"), None),
            (Some("+44 20 7946 0958"), None),
            (Some("+79001234567"), Some("79001234567")),
            (Some("8 (900) 123-45-67"), Some("79001234567")),
        ];
        for (number, expected) in cases {
            assert_eq!(
                caller_phone(number).as_ref().map(PhoneNumber::as_str),
                expected,
                "{number:?}"
            );
        }
    }

    #[test]
    fn a_lead_becomes_one_request_filed_under_the_callers_client() {
        let r = request(5, RequestSource::Call, Some(1));
        let text = |existing| LeadFacts::Text { lead: 42, existing };
        let call = |existing, call| LeadFacts::Call {
            call_id: 7,
            existing,
            call,
        };
        let create = |source, source_id, client| LeadPlan::Create {
            source,
            source_id,
            client,
        };
        let cases = [
            (
                text(None),
                create(RequestSource::Text, 42, ClientPlan::None),
            ),
            (text(Some(r.clone())), LeadPlan::Existing(r.clone())),
            (call(None, None), LeadPlan::UnknownCall),
            // The call's request answers even when the call is gone.
            (call(Some(r.clone()), None), LeadPlan::Existing(r.clone())),
            (
                call(Some(r.clone()), Some(caller(Some("+79001234567"), None))),
                LeadPlan::Existing(r.clone()),
            ),
            (
                call(None, Some(caller(Some("+79001234567"), Some(client(1))))),
                create(RequestSource::Call, 7, ClientPlan::Existing(client(1))),
            ),
            (
                call(None, Some(caller(Some("8 900 123 45 67"), None))),
                create(
                    RequestSource::Call,
                    7,
                    ClientPlan::Create(phone("+79001234567")),
                ),
            ),
            (
                call(None, Some(caller(Some("100"), Some(client(1))))),
                create(RequestSource::Call, 7, ClientPlan::None),
            ),
            (
                call(None, Some(caller(None, None))),
                create(RequestSource::Call, 7, ClientPlan::None),
            ),
        ];
        for (facts, plan) in cases {
            assert_eq!(lead(facts.clone()), plan, "{facts:?}");
        }
    }

    fn incoming(
        call: Option<CallerFacts>,
        recorded: Option<RecordedIncoming>,
        open_request: Option<Request>,
        call_request: Option<Request>,
    ) -> IncomingCallFacts {
        IncomingCallFacts {
            call_id: 7,
            call,
            recorded,
            open_request,
            call_request,
        }
    }

    #[test]
    fn an_incoming_call_reuses_the_open_request_and_is_processed_once() {
        let known = || Some(caller(Some("+79001234567"), Some(client(1))));
        let stranger = || Some(caller(Some("+79110000000"), None));
        let open = request(5, RequestSource::Text, Some(1));
        let from_call = request(6, RequestSource::Call, None);
        let recorded = RecordedIncoming {
            event_id: 3,
            client: Some(client(1)),
            request: Some(open.clone()),
        };
        let record = |client, request| IncomingCallPlan::Record { client, request };
        let cases = [
            (
                incoming(None, None, None, None),
                IncomingCallPlan::UnknownCall,
            ),
            (
                incoming(None, Some(recorded.clone()), None, None),
                IncomingCallPlan::UnknownCall,
            ),
            (
                incoming(known(), Some(recorded.clone()), None, None),
                IncomingCallPlan::Repeat(IncomingCall {
                    call_id: 7,
                    caller: Some("+79001234567".into()),
                    client: Some(client(1)),
                    client_created: false,
                    request: Some(open.clone()),
                    request_created: false,
                    event_id: 3,
                }),
            ),
            (
                incoming(known(), None, Some(open.clone()), Some(from_call.clone())),
                record(
                    ClientPlan::Existing(client(1)),
                    RequestChoice::Reuse(open.clone()),
                ),
            ),
            (
                incoming(known(), None, None, Some(from_call.clone())),
                record(
                    ClientPlan::Existing(client(1)),
                    RequestChoice::Reuse(from_call.clone()),
                ),
            ),
            (
                incoming(known(), None, None, None),
                record(
                    ClientPlan::Existing(client(1)),
                    RequestChoice::CreateFromCall,
                ),
            ),
            // A client made now has no open request, whatever was loaded.
            (
                incoming(stranger(), None, Some(open.clone()), None),
                record(
                    ClientPlan::Create(phone("+79110000000")),
                    RequestChoice::CreateFromCall,
                ),
            ),
            (
                incoming(
                    Some(caller(Some("anonymous"), None)),
                    None,
                    Some(open.clone()),
                    Some(from_call.clone()),
                ),
                record(ClientPlan::None, RequestChoice::Reuse(from_call.clone())),
            ),
            (
                incoming(Some(caller(None, None)), None, None, None),
                record(ClientPlan::None, RequestChoice::CreateFromCall),
            ),
        ];
        for (facts, plan) in cases {
            assert_eq!(incoming_call(facts.clone()), plan, "{facts:?}");
        }
    }

    #[test]
    fn an_arrival_keeps_the_first_mark() {
        let fresh = request(5, RequestSource::Text, None);
        let marked = Request {
            arrived_at: Some(at(1)),
            ..fresh.clone()
        };
        let cases = [
            (None, ArrivalPlan::UnknownRequest),
            (
                Some(fresh.clone()),
                ArrivalPlan::Mark(Request {
                    arrived_at: Some(at(9)),
                    ..fresh.clone()
                }),
            ),
            (
                Some(marked.clone()),
                ArrivalPlan::AlreadyArrived(marked.clone()),
            ),
        ];
        for (request, plan) in cases {
            assert_eq!(arrival(request.clone(), at(9)), plan, "{request:?}");
        }
    }
}
