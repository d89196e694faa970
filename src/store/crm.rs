//! Persistence for the CRM side (seed 003): import of clients, requests, inbound calls,
//! incoming-call events, API call detail records and number lookup.
//!
//! Every CRM operation follows one pattern: load the facts its rule needs (plain values
//! of `crm`), let the rule in `crm` decide, write the plan, all in one transaction on
//! the store thread. This module decides nothing itself: it only reads and writes what
//! the rule names.

use rusqlite::{Connection, OptionalExtension, Statement, Transaction, named_params, params};

use super::column::read;
use super::time::{StoredTime, time, time_opt};
use super::{Store, StoreError};
use crate::crm::cdr::{self, CdrPlan};
use crate::crm::ident::{self, IdentFacts};
use crate::crm::import::ValidDocument;
use crate::crm::requests::{
    self, ArrivalPlan, CallerFacts, ClientPlan, IncomingCallFacts, IncomingCallPlan, LeadFacts,
    LeadPlan, RecordedIncoming, RequestChoice,
};
use crate::crm::{
    CallDetailRecord, CdrSource, Client, DialIdent, IncomingCall, NewCallDetailRecord, PhoneNumber,
    Request, RequestSource,
};

/// How many rows an import wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImportCounts {
    pub clients: usize,
    pub contracts: usize,
    pub requests: usize,
}

const REQUEST_COLUMNS: &str = "id, source, source_id, client_id, status, created_at, arrived_at";

fn request_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Request> {
    Ok(Request {
        id: r.get(0)?,
        source: read(r, 1)?,
        source_id: r.get(2)?,
        client_id: r.get(3)?,
        status: read(r, 4)?,
        created: time(r, 5)?,
        arrived_at: time_opt(r, 6)?,
    })
}

fn request_by_id(conn: &Connection, id: i64) -> rusqlite::Result<Option<Request>> {
    conn.prepare_cached(&format!(
        "SELECT {REQUEST_COLUMNS} FROM requests WHERE id = ?1"
    ))?
    .query_row([id], request_row)
    .optional()
}

fn request_by_source(
    conn: &Connection,
    source: RequestSource,
    source_id: i64,
) -> rusqlite::Result<Option<Request>> {
    conn.prepare_cached(&format!(
        "SELECT {REQUEST_COLUMNS} FROM requests WHERE source = ?1 AND source_id = ?2"
    ))?
    .query_row(params![source, source_id], request_row)
    .optional()
}

/// The client's newest open request.
fn open_request_of(conn: &Connection, client_id: i64) -> rusqlite::Result<Option<Request>> {
    conn.prepare_cached(&format!(
        "SELECT {REQUEST_COLUMNS} FROM requests WHERE client_id = ?1 AND status = 'open' ORDER BY id DESC LIMIT 1"
    ))?
    .query_row([client_id], request_row)
    .optional()
}

fn insert_request(
    tx: &Transaction<'_>,
    source: RequestSource,
    source_id: i64,
    client_id: Option<i64>,
) -> rusqlite::Result<Request> {
    tx.prepare_cached(
        "INSERT INTO requests (source, source_id, client_id, created_at)
         VALUES (:source, :source_id, :client_id, :created_at)",
    )?
    .execute(named_params! {
        ":source": source,
        ":source_id": source_id,
        ":client_id": client_id,
        ":created_at": StoredTime::now(),
    })?;
    let id = tx.last_insert_rowid();
    request_by_id(tx, id)?.ok_or(rusqlite::Error::QueryReturnedNoRows)
}

fn client_by_id(conn: &Connection, id: i64) -> rusqlite::Result<Option<Client>> {
    let full_name: Option<Option<String>> = conn
        .prepare_cached("SELECT full_name FROM clients WHERE id = ?1")?
        .query_row([id], |r| r.get(0))
        .optional()?;
    let Some(full_name) = full_name else {
        return Ok(None);
    };
    let phones = conn
        .prepare_cached("SELECT phone FROM client_phones WHERE client_id = ?1 ORDER BY position")?
        .query_map([id], |r| {
            read::<PhoneNumber>(r, 0).map(|p| p.as_str().to_string())
        })?
        .collect::<Result<Vec<String>, _>>()?;
    Ok(Some(Client {
        id,
        full_name,
        phones,
    }))
}

/// The client owning `phone` (the lowest id when several do).
fn client_owning(conn: &Connection, phone: &PhoneNumber) -> rusqlite::Result<Option<Client>> {
    let owner: Option<i64> = conn
        .prepare_cached(
            "SELECT client_id FROM client_phones WHERE phone = ?1 ORDER BY client_id LIMIT 1",
        )?
        .query_row([phone.as_str()], |r| r.get(0))
        .optional()?;
    match owner {
        Some(id) => client_by_id(conn, id),
        None => Ok(None),
    }
}

/// The caller of a known call (from its inbound record, else from its first leg) and
/// the client owning the caller's number; `None` for a call medcall does not know.
fn caller_facts(conn: &Connection, call_id: i64) -> rusqlite::Result<Option<CallerFacts>> {
    let exists: Option<i64> = conn
        .prepare_cached("SELECT id FROM calls WHERE id = ?1")?
        .query_row([call_id], |r| r.get(0))
        .optional()?;
    if exists.is_none() {
        return Ok(None);
    }
    let inbound: Option<String> = conn
        .prepare_cached("SELECT caller FROM inbound_calls WHERE call_id = ?1")?
        .query_row([call_id], |r| r.get(0))
        .optional()?;
    let caller = match inbound {
        Some(caller) => Some(caller),
        None => conn
            .prepare_cached(
                "SELECT caller_num FROM legs WHERE call_id = ?1 ORDER BY created_at, id LIMIT 1",
            )?
            .query_row([call_id], |r| r.get::<_, Option<String>>(0))
            .optional()?
            .flatten(),
    };
    let owner = match requests::caller_phone(caller.as_deref()) {
        Some(phone) => client_owning(conn, &phone)?,
        None => None,
    };
    Ok(Some(CallerFacts { caller, owner }))
}

/// Makes the planned client. `(client, created)`.
fn write_client(
    tx: &Transaction<'_>,
    plan: ClientPlan,
) -> rusqlite::Result<(Option<Client>, bool)> {
    let phone = match plan {
        ClientPlan::None => return Ok((None, false)),
        ClientPlan::Existing(client) => return Ok((Some(client), false)),
        ClientPlan::Create(phone) => phone,
    };
    tx.prepare_cached("INSERT INTO clients (full_name, created_at) VALUES (NULL, ?1)")?
        .execute([StoredTime::now()])?;
    let id = tx.last_insert_rowid();
    tx.prepare_cached("INSERT INTO client_phones (client_id, position, phone) VALUES (?1, 0, ?2)")?
        .execute(params![id, phone.as_str()])?;
    Ok((
        Some(Client {
            id,
            full_name: None,
            phones: vec![phone.as_str().to_string()],
        }),
        true,
    ))
}

fn cdr_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<CallDetailRecord> {
    Ok(CallDetailRecord {
        id: r.get(0)?,
        source: read::<CdrSource>(r, 1)?,
        event_id: r.get(2)?,
        call_id: r.get(3)?,
        phone: r.get(4)?,
        extension: r.get(5)?,
        path: r.get(6)?,
        call_at: r.get(7)?,
        call_type: read(r, 8)?,
        duration: r.get(9)?,
        received_at: time(r, 10)?,
    })
}

fn cdr_by_event(conn: &Connection, event_id: i64) -> rusqlite::Result<Option<CallDetailRecord>> {
    conn.prepare_cached(
        "SELECT id, source, event_id, call_id, phone, extension, path, call_at, type, duration, received_at
         FROM call_detail_records WHERE event_id = ?1",
    )?
    .query_row([event_id], cdr_row)
    .optional()
}

/// The table of an entry's ordered phones: a client's or a contract's.
#[derive(Debug, Clone, Copy)]
enum PhoneList {
    Client,
    Contract,
}

impl PhoneList {
    fn delete_sql(self) -> &'static str {
        match self {
            PhoneList::Client => "DELETE FROM client_phones WHERE client_id = ?1",
            PhoneList::Contract => "DELETE FROM contract_phones WHERE contract_id = ?1",
        }
    }

    fn insert_sql(self) -> &'static str {
        match self {
            PhoneList::Client => {
                "INSERT INTO client_phones (client_id, position, phone) VALUES (?1, ?2, ?3)"
            }
            PhoneList::Contract => {
                "INSERT INTO contract_phones (contract_id, position, phone) VALUES (?1, ?2, ?3)"
            }
        }
    }
}

/// Upserts `entries` with `upsert` (run by `write_row`) and replaces each entry's phones
/// (`phones` gives its id and list) in `list`, in the document's order.
fn upsert_with_phones<T>(
    tx: &Transaction<'_>,
    upsert: &str,
    list: PhoneList,
    entries: &[T],
    write_row: impl Fn(&mut Statement<'_>, &T) -> rusqlite::Result<usize>,
    phones: impl Fn(&T) -> (i64, &[PhoneNumber]),
) -> Result<(), StoreError> {
    let mut up = tx.prepare_cached(upsert)?;
    let mut del = tx.prepare_cached(list.delete_sql())?;
    let mut ins = tx.prepare_cached(list.insert_sql())?;
    for entry in entries {
        write_row(&mut up, entry)?;
        let (id, numbers) = phones(entry);
        del.execute([id])?;
        for (position, phone) in (0_i64..).zip(numbers) {
            ins.execute(params![id, position, phone.as_str()])?;
        }
    }
    Ok(())
}

/// Writes `entries` in transactions of `batch` with `write`, calling `done` with the
/// number written after each commit.
fn in_batches<T>(
    conn: &mut Connection,
    entries: &[T],
    batch: usize,
    write: impl Fn(&Transaction<'_>, &[T]) -> Result<(), StoreError>,
    mut done: impl FnMut(usize),
) -> Result<(), StoreError> {
    for chunk in entries.chunks(batch.max(1)) {
        let tx = conn.transaction()?;
        write(&tx, chunk)?;
        tx.commit()?;
        done(chunk.len());
    }
    Ok(())
}

impl Store {
    /// Upserts a validated clients document in transactions of `batch` entries, calling
    /// `progress` after each with the counts so far. Phones of an upserted client or
    /// contract replace the old list.
    ///
    /// # Errors
    /// SQLite failures; batches already committed stay (the import is idempotent: run it again).
    pub async fn import_clients(
        &self,
        doc: ValidDocument,
        batch: usize,
        progress: impl Fn(ImportCounts) + Send + 'static,
    ) -> Result<ImportCounts, StoreError> {
        self.call(move |conn| {
            let mut counts = ImportCounts::default();
            in_batches(
                conn,
                &doc.clients,
                batch,
                |tx, chunk| {
                    let created = StoredTime::now();
                    upsert_with_phones(
                        tx,
                        "INSERT INTO clients (id, full_name, created_at) VALUES (?1, ?2, ?3)
                         ON CONFLICT (id) DO UPDATE SET full_name = coalesce(excluded.full_name, clients.full_name)",
                        PhoneList::Client,
                        chunk,
                        |up, c| up.execute(params![c.id, c.full_name, created]),
                        |c| (c.id, &c.phones),
                    )
                },
                |n| {
                    counts.clients += n;
                    progress(counts);
                },
            )?;
            in_batches(
                conn,
                &doc.contracts,
                batch,
                |tx, chunk| {
                    upsert_with_phones(
                        tx,
                        "INSERT INTO contracts (id, client_id) VALUES (?1, ?2)
                         ON CONFLICT (id) DO UPDATE SET client_id = excluded.client_id",
                        PhoneList::Contract,
                        chunk,
                        |up, c| up.execute(params![c.id, c.client_id]),
                        |c| (c.id, &c.phones),
                    )
                },
                |n| {
                    counts.contracts += n;
                    progress(counts);
                },
            )?;
            in_batches(
                conn,
                &doc.requests,
                batch,
                |tx, chunk| {
                    let created = StoredTime::now();
                    let mut up = tx.prepare_cached(
                        "INSERT INTO requests (id, source, source_id, client_id, status, created_at)
                         VALUES (:id, :source, :source_id, :client_id, :status, :created_at)
                         ON CONFLICT (id) DO UPDATE SET client_id = excluded.client_id, status = excluded.status",
                    )?;
                    for r in chunk {
                        up.execute(named_params! {
                            ":id": r.id,
                            ":source": r.source,
                            ":source_id": r.source_id,
                            ":client_id": r.client_id,
                            ":status": r.status,
                            ":created_at": created,
                        })?;
                    }
                    Ok(())
                },
                |n| {
                    counts.requests += n;
                    progress(counts);
                },
            )?;
            Ok(counts)
        })
        .await
    }

    /// Which of `ids` (ascending) name no stored client, ascending.
    ///
    /// # Errors
    /// SQLite failures.
    pub async fn unknown_clients(&self, ids: Vec<i64>) -> Result<Vec<i64>, StoreError> {
        self.call(move |conn| {
            let mut known = conn.prepare_cached("SELECT 1 FROM clients WHERE id = ?1")?;
            let mut unknown = Vec::new();
            for id in ids {
                if known.query_row([id], |_| Ok(())).optional()?.is_none() {
                    unknown.push(id);
                }
            }
            Ok(unknown)
        })
        .await
    }

    /// The request for text lead `lead`, made if new. `(request, created)`.
    ///
    /// # Errors
    /// SQLite failures; an unreadable stored value.
    pub async fn text_request(&self, lead: i64) -> Result<(Request, bool), StoreError> {
        self.transaction(move |tx| {
            let existing = request_by_source(tx, RequestSource::Text, lead)?;
            let answer = write_lead(tx, requests::lead(LeadFacts::Text { lead, existing }))?;
            // Only a call can be unknown: a text lead's plan answers or makes its request.
            answer.ok_or(StoreError::Sqlite(rusqlite::Error::QueryReturnedNoRows))
        })
        .await
    }

    /// The request for call `call_id`, made if new and linked to the client found (or
    /// created) by the caller's number. `None` when the call is unknown.
    ///
    /// # Errors
    /// SQLite failures; an unreadable stored value.
    pub async fn call_request(&self, call_id: i64) -> Result<Option<(Request, bool)>, StoreError> {
        self.transaction(move |tx| {
            let facts = LeadFacts::Call {
                call_id,
                existing: request_by_source(tx, RequestSource::Call, call_id)?,
                call: caller_facts(tx, call_id)?,
            };
            write_lead(tx, requests::lead(facts))
        })
        .await
    }

    /// `call_asterisk`: finds or creates the caller's client, records the incoming-call
    /// event, and creates a request when the client has no open one. `None` for an
    /// unknown call. Processing the same call again returns what was done the first time.
    ///
    /// # Errors
    /// SQLite failures; an unreadable stored value.
    pub async fn process_incoming_call(
        &self,
        call_id: i64,
    ) -> Result<Option<IncomingCall>, StoreError> {
        self.transaction(move |tx| {
            let facts = incoming_call_facts(tx, call_id)?;
            let caller = facts.call.as_ref().and_then(|c| c.caller.clone());
            let (client, request) = match requests::incoming_call(facts) {
                IncomingCallPlan::UnknownCall => return Ok(None),
                IncomingCallPlan::Repeat(done) => return Ok(Some(done)),
                IncomingCallPlan::Record { client, request } => (client, request),
            };
            let (client, client_created) = write_client(tx, client)?;
            let client_id = client.as_ref().map(|c| c.id);
            let (request, request_created) = match request {
                RequestChoice::Reuse(r) => (r, false),
                RequestChoice::CreateFromCall => (
                    insert_request(tx, RequestSource::Call, call_id, client_id)?,
                    true,
                ),
            };
            tx.prepare_cached(
                "INSERT INTO crm_events (kind, call_id, client_id, request_id, created_at)
                 VALUES ('incoming-call', :call_id, :client_id, :request_id, :created_at)",
            )?
            .execute(named_params! {
                ":call_id": call_id,
                ":client_id": client_id,
                ":request_id": request.id,
                ":created_at": StoredTime::now(),
            })?;
            Ok(Some(IncomingCall {
                call_id,
                caller,
                client,
                client_created,
                request: Some(request),
                request_created,
                event_id: tx.last_insert_rowid(),
            }))
        })
        .await
    }

    /// Stores a CRM call detail record; a repeated `event_id` returns the stored one.
    /// `(record, created)`.
    ///
    /// # Errors
    /// SQLite failures; an unreadable stored value.
    pub async fn insert_api_cdr(
        &self,
        cdr: NewCallDetailRecord,
    ) -> Result<(CallDetailRecord, bool), StoreError> {
        self.transaction(move |tx| {
            let event_id = cdr.event_id;
            let cdr = match cdr::record_cdr(cdr_by_event(tx, event_id)?, cdr) {
                CdrPlan::Existing(stored) => return Ok((stored, false)),
                CdrPlan::Insert(cdr) => cdr,
            };
            tx.prepare_cached(
                "INSERT INTO call_detail_records (source, event_id, phone, extension, path, call_at, type, duration, received_at)
                 VALUES (:source, :event_id, :phone, :extension, :path, :call_at, :type, :duration, :received_at)",
            )?
            .execute(named_params! {
                ":source": CdrSource::Api,
                ":event_id": cdr.event_id,
                ":phone": cdr.phone,
                ":extension": cdr.extension,
                ":path": cdr.path.as_str(),
                // The CRM's own time, to the second as it sent it: not a stored time of
                // medcall's (AMI rows keep Asterisk's text in this column).
                ":call_at": cdr.call_at.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
                ":type": cdr.call_type,
                ":duration": cdr.duration,
                ":received_at": StoredTime::now(),
            })?;
            let stored = cdr_by_event(tx, event_id)?.ok_or(rusqlite::Error::QueryReturnedNoRows)?;
            Ok((stored, true))
        })
        .await
    }

    /// Marks request `id` as arrived, keeping the first time. `None` if unknown.
    ///
    /// # Errors
    /// SQLite failures; an unreadable stored value.
    pub async fn mark_arrived(&self, id: i64) -> Result<Option<Request>, StoreError> {
        self.transaction(move |tx| {
            let now = StoredTime::now();
            match requests::arrival(request_by_id(tx, id)?, now.time()) {
                ArrivalPlan::UnknownRequest => Ok(None),
                ArrivalPlan::AlreadyArrived(r) => Ok(Some(r)),
                ArrivalPlan::Mark(r) => {
                    tx.prepare_cached("UPDATE requests SET arrived_at = ?2 WHERE id = ?1")?
                        .execute(params![r.id, r.arrived_at.map(StoredTime::at)])?;
                    Ok(Some(r))
                }
            }
        })
        .await
    }

    /// The phone a dial identifier stands for, if it exists.
    ///
    /// # Errors
    /// SQLite failures; an unreadable stored value.
    pub async fn lookup_dial_ident(
        &self,
        ident: DialIdent,
    ) -> Result<Option<PhoneNumber>, StoreError> {
        self.call(move |conn| {
            let facts = match ident {
                DialIdent::RequestClient { request, client } => IdentFacts {
                    request_client: conn
                        .prepare_cached("SELECT client_id FROM requests WHERE id = ?1")?
                        .query_row([request], |r| r.get::<_, Option<i64>>(0))
                        .optional()?
                        .flatten(),
                    phone: conn
                        .prepare_cached(
                            "SELECT phone FROM client_phones WHERE client_id = ?1 ORDER BY position LIMIT 1",
                        )?
                        .query_row([client], |r| read(r, 0))
                        .optional()?,
                },
                DialIdent::ContractPhone { contract, index } => IdentFacts {
                    request_client: None,
                    phone: conn
                        .prepare_cached(
                            "SELECT phone FROM contract_phones WHERE contract_id = ?1 AND position = ?2",
                        )?
                        .query_row(params![contract, i64::from(index)], |r| read(r, 0))
                        .optional()?,
                },
            };
            Ok(ident::resolve(ident, facts))
        })
        .await
    }

    /// Gives an inbound call its medcall call id (the `calls.id` of its Linkedid,
    /// creating the row if AMI has not yet reported it) and records the caller.
    ///
    /// # Errors
    /// SQLite failures.
    pub async fn register_inbound_call(
        &self,
        pbx: &str,
        linkedid: &str,
        uniqueid: &str,
        caller: &str,
        dialed: &str,
    ) -> Result<i64, StoreError> {
        let (pbx, linkedid, uniqueid, caller, dialed) = (
            pbx.to_string(),
            linkedid.to_string(),
            uniqueid.to_string(),
            caller.to_string(),
            dialed.to_string(),
        );
        self.transaction(move |tx| {
            let at = StoredTime::now();
            tx.prepare_cached(
                "INSERT INTO calls (pbx, linkedid, started_at) VALUES (?1, ?2, ?3) ON CONFLICT (pbx, linkedid) DO NOTHING",
            )?
            .execute(params![pbx, linkedid, at])?;
            let id: i64 = tx
                .prepare_cached("SELECT id FROM calls WHERE pbx = ?1 AND linkedid = ?2")?
                .query_row(params![pbx, linkedid], |r| r.get(0))?;
            let phone = PhoneNumber::parse(&caller).ok().map(|p| p.as_str().to_string());
            tx.prepare_cached(
                "INSERT INTO inbound_calls (call_id, uniqueid, caller, caller_phone, dialed, created_at)
                 VALUES (:call_id, :uniqueid, :caller, :caller_phone, :dialed, :created_at)
                 ON CONFLICT (call_id) DO NOTHING",
            )?
            .execute(named_params! {
                ":call_id": id,
                ":uniqueid": uniqueid,
                ":caller": caller,
                ":caller_phone": phone,
                ":dialed": dialed,
                ":created_at": at,
            })?;
            Ok(id)
        })
        .await
    }
}

/// What `call_asterisk` needs to know of call `call_id`.
fn incoming_call_facts(tx: &Transaction<'_>, call_id: i64) -> rusqlite::Result<IncomingCallFacts> {
    let call = caller_facts(tx, call_id)?;
    let recorded: Option<(i64, Option<i64>, Option<i64>)> = tx
        .prepare_cached(
            "SELECT id, client_id, request_id FROM crm_events WHERE kind = 'incoming-call' AND call_id = ?1",
        )?
        .query_row([call_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    let recorded = match recorded {
        Some((event_id, client_id, request_id)) => Some(RecordedIncoming {
            event_id,
            client: client_id
                .map(|id| client_by_id(tx, id))
                .transpose()?
                .flatten(),
            request: request_id
                .map(|id| request_by_id(tx, id))
                .transpose()?
                .flatten(),
        }),
        None => None,
    };
    let open_request = match call.as_ref().and_then(|c| c.owner.as_ref()) {
        Some(owner) => open_request_of(tx, owner.id)?,
        None => None,
    };
    Ok(IncomingCallFacts {
        call_id,
        call,
        recorded,
        open_request,
        call_request: request_by_source(tx, RequestSource::Call, call_id)?,
    })
}

/// Writes a lead's plan: `None` for an unknown call, else `(request, created)`.
fn write_lead(tx: &Transaction<'_>, plan: LeadPlan) -> Result<Option<(Request, bool)>, StoreError> {
    match plan {
        LeadPlan::Existing(r) => Ok(Some((r, false))),
        LeadPlan::UnknownCall => Ok(None),
        LeadPlan::Create {
            source,
            source_id,
            client,
        } => {
            let (client, _) = write_client(tx, client)?;
            let r = insert_request(tx, source, source_id, client.map(|c| c.id))?;
            Ok(Some((r, true)))
        }
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::crm::import::ClientsDocument;

    async fn store_with_clients() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("m.db")).unwrap();
        let doc: ClientsDocument = serde_json::from_str(
            r#"{"clients":[{"id":654321,"fullName":"Иванов И.И.","phones":["+7 900 123-45-67","89007654321"]}],
                "contracts":[{"id":7000,"clientId":654321,"phones":["+79001112233","+79004445566"]}],
                "requests":[{"id":123456,"clientId":654321}]}"#,
        )
        .unwrap();
        let counts = store
            .import_clients(doc.validate().unwrap(), 1000, |_| {})
            .await
            .unwrap();
        assert_eq!(
            counts,
            ImportCounts {
                clients: 1,
                contracts: 1,
                requests: 1
            }
        );
        (dir, store)
    }

    #[tokio::test]
    async fn a_reimport_replaces_each_entrys_phones_in_the_documents_order() {
        let (_d, store) = store_with_clients().await;
        let doc: ClientsDocument = serde_json::from_str(
            r#"{"clients":[{"id":654321,"phones":["89005550000"]}],
                "contracts":[{"id":7000,"clientId":654321,"phones":["89006660000","89007770000"]}]}"#,
        )
        .unwrap();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let progress = seen.clone();
        let counts = store
            .import_clients(doc.validate().unwrap(), 1000, move |c| {
                progress.lock().unwrap().push(c)
            })
            .await
            .unwrap();
        let one = |clients, contracts| ImportCounts {
            clients,
            contracts,
            requests: 0,
        };
        assert_eq!(counts, one(1, 1));
        assert_eq!(*seen.lock().unwrap(), [one(1, 0), one(1, 1)]);
        let phones = |sql: &'static str| {
            store.call(move |c| {
                let mut stmt = c.prepare(sql)?;
                let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
        };
        assert_eq!(
            phones("SELECT phone FROM client_phones WHERE client_id = 654321 ORDER BY position")
                .await
                .unwrap(),
            ["79005550000"]
        );
        assert_eq!(
            phones("SELECT phone FROM contract_phones WHERE contract_id = 7000 ORDER BY position")
                .await
                .unwrap(),
            ["79006660000", "79007770000"]
        );
        // The name the document left out is kept.
        let client = store.call(|c| Ok(client_by_id(c, 654321)?)).await.unwrap();
        assert_eq!(
            client.and_then(|c| c.full_name).as_deref(),
            Some("Иванов И.И.")
        );
    }

    #[tokio::test]
    async fn dial_identifiers_resolve_to_the_right_phone_or_nothing() {
        let (_d, store) = store_with_clients().await;
        let q = |s: &str| DialIdent::parse(s).unwrap();
        assert_eq!(
            store
                .lookup_dial_ident(q("+123456s654321"))
                .await
                .unwrap()
                .unwrap()
                .dial_form(),
            "89001234567"
        );
        assert_eq!(
            store
                .lookup_dial_ident(q("+7000d1"))
                .await
                .unwrap()
                .unwrap()
                .dial_form(),
            "89004445566"
        );
        assert!(
            store
                .lookup_dial_ident(q("+7000d2"))
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            store
                .lookup_dial_ident(q("+123456s1"))
                .await
                .unwrap()
                .is_none(),
            "client of another request"
        );
        assert!(
            store
                .lookup_dial_ident(q("+1s654321"))
                .await
                .unwrap()
                .is_none()
        );
    }

    #[tokio::test]
    async fn an_inbound_call_finds_its_client_and_reuses_the_open_request() {
        let (_d, store) = store_with_clients().await;
        let id = store
            .register_inbound_call("rig", "1.0", "1.0", "+79001234567", "100")
            .await
            .unwrap();
        assert_eq!(
            store
                .register_inbound_call("rig", "1.0", "1.0", "+79001234567", "100")
                .await
                .unwrap(),
            id
        );
        let out = store.process_incoming_call(id).await.unwrap().unwrap();
        assert_eq!(out.client.as_ref().unwrap().id, 654321);
        assert!(!out.client_created);
        assert_eq!(
            out.request.as_ref().unwrap().id,
            123456,
            "the client's open request"
        );
        assert!(!out.request_created);
        let again = store.process_incoming_call(id).await.unwrap().unwrap();
        assert_eq!(again.event_id, out.event_id, "idempotent");

        let stranger = store
            .register_inbound_call("rig", "2.0", "2.0", "8 (911) 000-00-00", "100")
            .await
            .unwrap();
        let out = store
            .process_incoming_call(stranger)
            .await
            .unwrap()
            .unwrap();
        assert!(out.client_created && out.request_created);
        assert_eq!(out.client.unwrap().phones, vec!["79110000000"]);
        assert!(store.process_incoming_call(99_999).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn requests_are_idempotent_per_source_and_arrival_keeps_the_first_time() {
        let (_d, store) = store_with_clients().await;
        let (a, created) = store.text_request(42).await.unwrap();
        assert!(created);
        let (b, created) = store.text_request(42).await.unwrap();
        assert!(!created);
        assert_eq!(a, b);
        let first = store
            .mark_arrived(a.id)
            .await
            .unwrap()
            .unwrap()
            .arrived_at
            .unwrap();
        let second = store
            .mark_arrived(a.id)
            .await
            .unwrap()
            .unwrap()
            .arrived_at
            .unwrap();
        assert_eq!(first, second);
        assert!(store.mark_arrived(999_999).await.unwrap().is_none());
        assert!(
            store.call_request(999_999).await.unwrap().is_none(),
            "unknown call"
        );
    }

    /// Runs `sql` on the store's own connection, as a corrupting hand would.
    async fn corrupt(store: &Store, sql: &'static str) {
        store
            .call(move |c| Ok(c.execute_batch(sql)?))
            .await
            .unwrap();
    }

    fn bad_value(e: StoreError) -> (String, String) {
        match e {
            StoreError::BadValue(bad) => (bad.column, bad.value),
            other => panic!("not a BadValue: {other}"),
        }
    }

    #[tokio::test]
    async fn a_corrupt_stored_time_fails_the_read_instead_of_reading_as_1970() {
        let (_d, store) = store_with_clients().await;
        corrupt(
            &store,
            "UPDATE requests SET created_at = 'yesterday' WHERE id = 123456",
        )
        .await;
        let e = store.mark_arrived(123_456).await.unwrap_err();
        assert!(e.to_string().contains("created_at"), "{e}");
        assert_eq!(
            bad_value(e),
            ("created_at".to_string(), "yesterday".to_string())
        );
        // The refused read wrote nothing either.
        let arrived: Option<String> = store
            .call(|c| {
                Ok(c.query_row(
                    "SELECT arrived_at FROM requests WHERE id = 123456",
                    [],
                    |r| r.get(0),
                )?)
            })
            .await
            .unwrap();
        assert_eq!(arrived, None);

        let (r, _) = store.text_request(42).await.unwrap();
        corrupt(
            &store,
            "UPDATE requests SET arrived_at = '2026-13-45T00:00:00Z' WHERE source = 'text'",
        )
        .await;
        let e = store.mark_arrived(r.id).await.unwrap_err();
        assert_eq!(
            bad_value(e),
            ("arrived_at".to_string(), "2026-13-45T00:00:00Z".to_string())
        );
    }

    #[tokio::test]
    async fn an_unknown_stored_word_is_an_error_naming_its_column_not_a_default() {
        let (_d, store) = store_with_clients().await;
        let (r, _) = store.text_request(42).await.unwrap();
        // The foreign keys stay valid: only the words are wrong.
        corrupt(
            &store,
            "UPDATE requests SET source = 'fax' WHERE source = 'text'",
        )
        .await;
        let e = store.mark_arrived(r.id).await.unwrap_err();
        assert_eq!(bad_value(e), ("source".to_string(), "fax".to_string()));
        corrupt(
            &store,
            "UPDATE requests SET source = 'text', status = 'Closed'",
        )
        .await;
        let e = store.mark_arrived(r.id).await.unwrap_err();
        assert_eq!(bad_value(e), ("status".to_string(), "Closed".to_string()));

        let cdr = |event_id| NewCallDetailRecord {
            event_id,
            phone: "89001234567".into(),
            extension: "101".into(),
            path: crate::crm::RecordingPath::parse("a.wav").unwrap(),
            call_at: None,
            call_type: Some(crate::crm::CallType::Outgoing),
            duration: None,
        };
        store.insert_api_cdr(cdr(1)).await.unwrap();
        corrupt(&store, "UPDATE call_detail_records SET type = 'sideways'").await;
        let e = store.insert_api_cdr(cdr(1)).await.unwrap_err();
        assert_eq!(bad_value(e), ("type".to_string(), "sideways".to_string()));
        corrupt(
            &store,
            "UPDATE call_detail_records SET type = NULL, source = 'crm'",
        )
        .await;
        let e = store.insert_api_cdr(cdr(1)).await.unwrap_err();
        assert_eq!(bad_value(e), ("source".to_string(), "crm".to_string()));

        corrupt(
            &store,
            "UPDATE contract_phones SET phone = '89001112233' WHERE position = 0",
        )
        .await;
        let e = store
            .lookup_dial_ident(DialIdent::parse("+7000d0").unwrap())
            .await
            .unwrap_err();
        assert_eq!(
            bad_value(e),
            ("phone".to_string(), "89001112233".to_string())
        );
    }

    async fn count(store: &Store, table: &'static str) -> i64 {
        store
            .call(move |c| {
                Ok(c.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))?)
            })
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_call_lead_files_its_request_under_the_callers_client_made_once() {
        let (_d, store) = store_with_clients().await;
        let known = store
            .register_inbound_call("rig", "1.0", "1.0", "+79001234567", "100")
            .await
            .unwrap();
        let (r, created) = store.call_request(known).await.unwrap().unwrap();
        assert!(created);
        assert_eq!(
            (r.source, r.source_id, r.client_id),
            (RequestSource::Call, known, Some(654321))
        );
        assert_eq!(
            count(&store, "clients").await,
            1,
            "the owner, not a new client"
        );
        assert_eq!(store.call_request(known).await.unwrap(), Some((r, false)));

        let stranger = store
            .register_inbound_call("rig", "2.0", "2.0", "8 911 000 00 00", "100")
            .await
            .unwrap();
        let (r, _) = store.call_request(stranger).await.unwrap().unwrap();
        assert_eq!(
            count(&store, "clients").await,
            2,
            "a client for the new number"
        );
        let made = r.client_id.unwrap();
        let out = store
            .process_incoming_call(stranger)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(out.client.as_ref().map(|c| c.id), Some(made));
        assert!(!out.client_created);
        assert_eq!(
            out.request.as_ref().map(|q| q.id),
            Some(r.id),
            "the new client's open request is the call's"
        );
        assert_eq!(count(&store, "clients").await, 2);
        assert_eq!(count(&store, "crm_events").await, 1);

        let anonymous = store
            .register_inbound_call("rig", "3.0", "3.0", "anonymous", "100")
            .await
            .unwrap();
        let out = store
            .process_incoming_call(anonymous)
            .await
            .unwrap()
            .unwrap();
        assert!(out.client.is_none() && !out.client_created && out.request_created);
        assert_eq!(out.request.as_ref().and_then(|r| r.client_id), None);
        let again = store
            .process_incoming_call(anonymous)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            again,
            IncomingCall {
                request_created: false,
                ..out
            }
        );
        assert_eq!(count(&store, "clients").await, 2);
        assert_eq!(count(&store, "crm_events").await, 2);
        assert_eq!(count(&store, "requests").await, 4);
    }
}
