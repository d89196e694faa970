//! Persistence for the CRM side (seed 003): import of clients, requests, inbound calls,
//! incoming-call events, API call detail records and number lookup.

use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::{Connection, OptionalExtension, Transaction, params};

use super::{Store, StoreError};
use crate::crm::import::ValidDocument;
use crate::crm::{
    CallDetailRecord, Client, DialIdent, IncomingCall, NewCallDetailRecord, PhoneNumber, Request,
    RequestSource,
};

fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn parse_ts(s: Option<String>) -> Option<DateTime<Utc>> {
    s.and_then(|s| DateTime::parse_from_rfc3339(&s).ok())
        .map(|t| t.with_timezone(&Utc))
}

/// How many rows an import wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImportCounts {
    pub clients: usize,
    pub contracts: usize,
    pub requests: usize,
}

const REQUEST_COLUMNS: &str = "id, source, source_id, client_id, status, created_at, arrived_at";

fn request_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Request> {
    Ok(Request {
        id: r.get(0)?,
        source: RequestSource::from_stored(&r.get::<_, String>(1)?),
        source_id: r.get(2)?,
        client_id: r.get(3)?,
        status: r.get(4)?,
        created: parse_ts(r.get(5)?).unwrap_or_default(),
        arrived_at: parse_ts(r.get(6)?),
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
    .query_row(params![source.as_str(), source_id], request_row)
    .optional()
}

fn insert_request(
    tx: &Transaction<'_>,
    source: RequestSource,
    source_id: i64,
    client_id: Option<i64>,
) -> rusqlite::Result<Request> {
    tx.prepare_cached(
        "INSERT INTO requests (source, source_id, client_id, created_at) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![source.as_str(), source_id, client_id, now()])?;
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
        .query_map([id], |r| r.get(0))?
        .collect::<Result<Vec<String>, _>>()?;
    Ok(Some(Client {
        id,
        full_name,
        phones,
    }))
}

/// The client owning `phone`, or a new client with it. `(client, created)`.
fn find_or_create_client(
    tx: &Transaction<'_>,
    phone: &PhoneNumber,
) -> rusqlite::Result<(Client, bool)> {
    let existing: Option<i64> = tx
        .prepare_cached(
            "SELECT client_id FROM client_phones WHERE phone = ?1 ORDER BY client_id LIMIT 1",
        )?
        .query_row([phone.as_str()], |r| r.get(0))
        .optional()?;
    if let Some(id) = existing {
        if let Some(c) = client_by_id(tx, id)? {
            return Ok((c, false));
        }
    }
    tx.prepare_cached("INSERT INTO clients (full_name, created_at) VALUES (NULL, ?1)")?
        .execute([now()])?;
    let id = tx.last_insert_rowid();
    tx.prepare_cached("INSERT INTO client_phones (client_id, position, phone) VALUES (?1, 0, ?2)")?
        .execute(params![id, phone.as_str()])?;
    Ok((
        Client {
            id,
            full_name: None,
            phones: vec![phone.as_str().to_string()],
        },
        true,
    ))
}

/// The caller of a known call: from its inbound record, else from its first leg.
fn call_caller(conn: &Connection, call_id: i64) -> rusqlite::Result<Option<Option<String>>> {
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
    if inbound.is_some() {
        return Ok(Some(inbound));
    }
    let leg: Option<Option<String>> = conn
        .prepare_cached(
            "SELECT caller_num FROM legs WHERE call_id = ?1 ORDER BY created_at, id LIMIT 1",
        )?
        .query_row([call_id], |r| r.get(0))
        .optional()?;
    Ok(Some(leg.flatten()))
}

fn cdr_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<CallDetailRecord> {
    Ok(CallDetailRecord {
        id: r.get(0)?,
        source: r.get(1)?,
        event_id: r.get(2)?,
        call_id: r.get(3)?,
        phone: r.get(4)?,
        extension: r.get(5)?,
        path: r.get(6)?,
        call_at: r.get(7)?,
        call_type: r.get(8)?,
        duration: r.get(9)?,
        received_at: parse_ts(r.get(10)?).unwrap_or_default(),
    })
}

const CDR_COLUMNS: &str =
    "id, source, event_id, call_id, phone, extension, path, call_at, type, duration, received_at";

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
            let batch = batch.max(1);
            let mut counts = ImportCounts::default();
            for chunk in doc.clients.chunks(batch) {
                let tx = conn.transaction()?;
                {
                    let mut up = tx.prepare_cached(
                        "INSERT INTO clients (id, full_name, created_at) VALUES (?1, ?2, ?3)
                         ON CONFLICT (id) DO UPDATE SET full_name = coalesce(excluded.full_name, clients.full_name)",
                    )?;
                    let mut del = tx.prepare_cached("DELETE FROM client_phones WHERE client_id = ?1")?;
                    let mut ins = tx.prepare_cached("INSERT INTO client_phones (client_id, position, phone) VALUES (?1, ?2, ?3)")?;
                    let created = now();
                    for c in chunk {
                        up.execute(params![c.id, c.full_name, created])?;
                        del.execute([c.id])?;
                        for (i, p) in c.phones.iter().enumerate() {
                            ins.execute(params![c.id, i as i64, p.as_str()])?;
                        }
                    }
                }
                tx.commit()?;
                counts.clients += chunk.len();
                progress(counts);
            }
            for chunk in doc.contracts.chunks(batch) {
                let tx = conn.transaction()?;
                {
                    let mut up = tx.prepare_cached(
                        "INSERT INTO contracts (id, client_id) VALUES (?1, ?2)
                         ON CONFLICT (id) DO UPDATE SET client_id = excluded.client_id",
                    )?;
                    let mut del = tx.prepare_cached("DELETE FROM contract_phones WHERE contract_id = ?1")?;
                    let mut ins =
                        tx.prepare_cached("INSERT INTO contract_phones (contract_id, position, phone) VALUES (?1, ?2, ?3)")?;
                    for c in chunk {
                        up.execute(params![c.id, c.client_id])?;
                        del.execute([c.id])?;
                        for (i, p) in c.phones.iter().enumerate() {
                            ins.execute(params![c.id, i as i64, p.as_str()])?;
                        }
                    }
                }
                tx.commit()?;
                counts.contracts += chunk.len();
                progress(counts);
            }
            for chunk in doc.requests.chunks(batch) {
                let tx = conn.transaction()?;
                {
                    let mut up = tx.prepare_cached(
                        "INSERT INTO requests (id, source, source_id, client_id, status, created_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                         ON CONFLICT (id) DO UPDATE SET client_id = excluded.client_id, status = excluded.status",
                    )?;
                    let created = now();
                    for r in chunk {
                        up.execute(params![r.id, r.source, r.source_id, r.client_id, r.status, created])?;
                    }
                }
                tx.commit()?;
                counts.requests += chunk.len();
                progress(counts);
            }
            Ok(counts)
        })
        .await
    }

    /// The request for text lead `lead`, made if new. `(request, created)`.
    ///
    /// # Errors
    /// SQLite failures.
    pub async fn text_request(&self, lead: i64) -> Result<(Request, bool), StoreError> {
        self.call(move |conn| {
            if let Some(r) = request_by_source(conn, RequestSource::Text, lead)? {
                return Ok((r, false));
            }
            let tx = conn.transaction()?;
            let r = insert_request(&tx, RequestSource::Text, lead, None)?;
            tx.commit()?;
            Ok((r, true))
        })
        .await
    }

    /// The request for call `call_id`, made if new and linked to the client found (or
    /// created) by the caller's number. `None` when the call is unknown.
    ///
    /// # Errors
    /// SQLite failures.
    pub async fn call_request(&self, call_id: i64) -> Result<Option<(Request, bool)>, StoreError> {
        self.call(move |conn| {
            if let Some(r) = request_by_source(conn, RequestSource::Call, call_id)? {
                return Ok(Some((r, false)));
            }
            let Some(caller) = call_caller(conn, call_id)? else {
                return Ok(None);
            };
            let tx = conn.transaction()?;
            let client = match caller.as_deref().map(PhoneNumber::parse) {
                Some(Ok(phone)) => Some(find_or_create_client(&tx, &phone)?.0.id),
                _ => None,
            };
            let r = insert_request(&tx, RequestSource::Call, call_id, client)?;
            tx.commit()?;
            Ok(Some((r, true)))
        })
        .await
    }

    /// `call_asterisk`: finds or creates the caller's client, records the incoming-call
    /// event, and creates a request when the client has no open one. `None` for an
    /// unknown call. Processing the same call again returns what was done the first time.
    ///
    /// # Errors
    /// SQLite failures.
    pub async fn process_incoming_call(
        &self,
        call_id: i64,
    ) -> Result<Option<IncomingCall>, StoreError> {
        self.call(move |conn| {
            let Some(caller) = call_caller(conn, call_id)? else { return Ok(None) };
            let tx = conn.transaction()?;
            let done: Option<(i64, Option<i64>, Option<i64>)> = tx
                .prepare_cached("SELECT id, client_id, request_id FROM crm_events WHERE kind = 'incoming-call' AND call_id = ?1")?
                .query_row([call_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .optional()?;
            if let Some((event_id, client_id, request_id)) = done {
                let client = client_id.map(|id| client_by_id(&tx, id)).transpose()?.flatten();
                let request = request_id.map(|id| request_by_id(&tx, id)).transpose()?.flatten();
                return Ok(Some(IncomingCall {
                    call_id,
                    caller,
                    client,
                    client_created: false,
                    request,
                    request_created: false,
                    event_id,
                }));
            }
            let (client, client_created) = match caller.as_deref().map(PhoneNumber::parse) {
                Some(Ok(phone)) => {
                    let (c, created) = find_or_create_client(&tx, &phone)?;
                    (Some(c), created)
                }
                _ => (None, false),
            };
            let open: Option<Request> = match &client {
                Some(c) => tx
                    .prepare_cached(&format!(
                        "SELECT {REQUEST_COLUMNS} FROM requests WHERE client_id = ?1 AND status = 'open' ORDER BY id DESC LIMIT 1"
                    ))?
                    .query_row([c.id], request_row)
                    .optional()?,
                None => None,
            };
            let (request, request_created) = match open {
                Some(r) => (r, false),
                None => match request_by_source(&tx, RequestSource::Call, call_id)? {
                    Some(r) => (r, false),
                    None => (insert_request(&tx, RequestSource::Call, call_id, client.as_ref().map(|c| c.id))?, true),
                },
            };
            tx.prepare_cached(
                "INSERT INTO crm_events (kind, call_id, client_id, request_id, created_at) VALUES ('incoming-call', ?1, ?2, ?3, ?4)",
            )?
            .execute(params![call_id, client.as_ref().map(|c| c.id), request.id, now()])?;
            let event_id = tx.last_insert_rowid();
            tx.commit()?;
            Ok(Some(IncomingCall {
                call_id,
                caller,
                client,
                client_created,
                request: Some(request),
                request_created,
                event_id,
            }))
        })
        .await
    }

    /// Stores a CRM call detail record; a repeated `event_id` returns the stored one.
    /// `(record, created)`.
    ///
    /// # Errors
    /// SQLite failures.
    pub async fn insert_api_cdr(
        &self,
        cdr: NewCallDetailRecord,
    ) -> Result<(CallDetailRecord, bool), StoreError> {
        self.call(move |conn| {
            let select = format!("SELECT {CDR_COLUMNS} FROM call_detail_records WHERE event_id = ?1");
            if let Some(r) = conn.prepare_cached(&select)?.query_row([cdr.event_id], cdr_row).optional()? {
                return Ok((r, false));
            }
            conn.prepare_cached(
                "INSERT INTO call_detail_records (source, event_id, phone, extension, path, call_at, type, duration, received_at)
                 VALUES ('api', ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?
            .execute(params![
                cdr.event_id,
                cdr.phone,
                cdr.extension,
                cdr.path.as_str(),
                cdr.call_at.map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true)),
                cdr.call_type.map(|t| match t {
                    crate::crm::CallType::Incoming => "incoming",
                    crate::crm::CallType::Outgoing => "outgoing",
                }),
                cdr.duration,
                now()
            ])?;
            let r = conn.prepare_cached(&select)?.query_row([cdr.event_id], cdr_row)?;
            Ok((r, true))
        })
        .await
    }

    /// Marks request `id` as arrived, keeping the first time. `None` if unknown.
    ///
    /// # Errors
    /// SQLite failures.
    pub async fn mark_arrived(&self, id: i64) -> Result<Option<Request>, StoreError> {
        self.call(move |conn| {
            conn.prepare_cached(
                "UPDATE requests SET arrived_at = coalesce(arrived_at, ?2) WHERE id = ?1",
            )?
            .execute(params![id, now()])?;
            Ok(request_by_id(conn, id)?)
        })
        .await
    }

    /// The phone a dial identifier stands for, if it exists.
    ///
    /// # Errors
    /// SQLite failures.
    pub async fn lookup_dial_ident(
        &self,
        ident: DialIdent,
    ) -> Result<Option<PhoneNumber>, StoreError> {
        self.call(move |conn| {
            let phone: Option<String> = match ident {
                DialIdent::RequestClient { request, client } => conn
                    .prepare_cached(
                        "SELECT p.phone FROM requests r JOIN client_phones p ON p.client_id = r.client_id
                         WHERE r.id = ?1 AND r.client_id = ?2 ORDER BY p.position LIMIT 1",
                    )?
                    .query_row([request, client], |r| r.get(0))
                    .optional()?,
                DialIdent::ContractPhone { contract, index } => conn
                    .prepare_cached("SELECT phone FROM contract_phones WHERE contract_id = ?1 AND position = ?2")?
                    .query_row(params![contract, i64::from(index)], |r| r.get(0))
                    .optional()?,
            };
            Ok(phone.map(PhoneNumber::from_stored))
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
        self.call(move |conn| {
            let tx = conn.transaction()?;
            let at = now();
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
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (call_id) DO NOTHING",
            )?
            .execute(params![id, uniqueid, caller, phone, dialed, at])?;
            tx.commit()?;
            Ok(id)
        })
        .await
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
}
