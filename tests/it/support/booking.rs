//! A booking client for the tests: signs each request as SPEC §3 says (with
//! `medcall::signing`, whose known-answer test pins it to `openssl dgst -hmac`), and the
//! daemon configuration that knows its clients.

use medcall::config::Secret;
use medcall::signing;
use serde_json::Value;

use super::{Daemon, DaemonOptions};

pub const PORTAL: (&str, &str) = ("portal", "portal-secret-0123456789");
pub const KIOSK: (&str, &str) = ("kiosk", "kiosk-secret-9876543210");

/// The `[booking]` section of the tests' daemons: two clients, a fast sweeper.
pub fn config() -> String {
    format!(
        "[booking]\n\
         signature_window_s = 300\n\
         sweep_interval_ms = 200\n\
         [[booking.clients]]\n\
         id = \"{}\"\nname = \"Портал пациента\"\nsecret = \"{}\"\n\
         [[booking.clients]]\n\
         id = \"{}\"\nsecret = \"{}\"\nsource = 3\nsource_name = \"Infomat\"\n",
        PORTAL.0, PORTAL.1, KIOSK.0, KIOSK.1
    )
}

pub fn options() -> DaemonOptions {
    DaemonOptions::default().config(&config())
}

/// Now, in Unix seconds.
pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// One booking client of one daemon.
#[derive(Clone)]
pub struct Booker {
    pub http: String,
    pub key: String,
    pub id: String,
    pub secret: String,
    pub client: reqwest::Client,
}

/// A request as sent, for tampering: what is signed and what is sent may differ.
#[derive(Clone, Debug)]
pub struct Signed {
    pub method: String,
    pub target: String,
    pub timestamp: String,
    pub body: String,
    pub signature: String,
    pub client_id: String,
}

impl Booker {
    pub fn new(d: &Daemon, (id, secret): (&str, &str)) -> Booker {
        Booker {
            http: d.http.clone(),
            key: d.admin_key(),
            id: id.into(),
            secret: secret.into(),
            client: reqwest::Client::new(),
        }
    }

    /// `method target` with `body`, signed at `timestamp`.
    pub fn sign_at(&self, method: &str, target: &str, body: &str, timestamp: i64) -> Signed {
        let ts = timestamp.to_string();
        let canonical = signing::canonical(method, target, &ts, body.as_bytes());
        Signed {
            method: method.into(),
            target: target.into(),
            timestamp: ts,
            body: body.into(),
            signature: signing::sign(&Secret::new(self.secret.clone()), &canonical),
            client_id: self.id.clone(),
        }
    }

    pub fn sign(&self, method: &str, target: &str, body: &str) -> Signed {
        self.sign_at(method, target, body, now())
    }

    /// Sends `s` as it is; the status and the body (JSON, or `Null` if it is not).
    pub async fn send(&self, s: &Signed) -> (u16, Value) {
        let (status, text) = self.send_raw(s).await;
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn send_raw(&self, s: &Signed) -> (u16, String) {
        let method = reqwest::Method::from_bytes(s.method.as_bytes()).unwrap();
        let r = self
            .client
            .request(method, format!("{}{}", self.http, s.target))
            .bearer_auth(&self.key)
            .header("content-type", "application/json")
            .header("x-client-id", &s.client_id)
            .header("x-timestamp", &s.timestamp)
            .header("x-signature", &s.signature)
            .body(s.body.clone())
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.text().await.unwrap())
    }

    /// Signs and sends, as a request of its own: a query parameter `r` (which the
    /// routes ignore) makes it differ from every other, so it is never a replay.
    pub async fn call(&self, method: &str, target: &str, body: &str) -> (u16, Value) {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let sep = if target.contains('?') { '&' } else { '?' };
        let target = format!("{target}{sep}r={n}");
        self.send(&self.sign(method, &target, body)).await
    }

    /// `POST /visit/{lpu}/reservation` of `cell`.
    pub async fn reserve(&self, lpu: &str, cell: &str, age: &str, minutes: i64) -> (u16, Value) {
        let body =
            serde_json::json!({"timeTable": cell, "ageCategory": age, "reserveTime": minutes});
        self.call(
            "POST",
            &format!("/visit/{lpu}/reservation"),
            &body.to_string(),
        )
        .await
    }

    pub async fn get_ticket(&self, lpu: &str, ticket: &str) -> (u16, Value) {
        self.call("GET", &format!("/visit/{lpu}/reservation/{ticket}"), "")
            .await
    }
}

/// Loads `fixtures/booking/{directory,schedule}.json` into `d`.
pub async fn load_fixtures(d: &Daemon) {
    let key = d.admin_key();
    for (route, file) in [
        ("/admin/directory", "directory.json"),
        ("/admin/schedule", "schedule.json"),
    ] {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/booking/").to_string() + file;
        put(d, &key, route, &std::fs::read_to_string(path).unwrap()).await;
    }
}

/// `PUT route` with `document`, asserting it was accepted.
pub async fn put(d: &Daemon, key: &str, route: &str, document: &str) {
    let r = d
        .client()
        .put(format!("{}{route}", d.http))
        .bearer_auth(key)
        .header("content-type", "application/json")
        .body(document.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{route}: {}", r.text().await.unwrap());
}

/// A schedule of `count` cells of `plan` places each at the fixture's adult LPU, for
/// the fixture's first doctor, tomorrow-ish and on; their GUIDs, made from `tag`.
pub async fn add_cells(d: &Daemon, tag: u16, count: usize, plan: i64) -> Vec<String> {
    let cells: Vec<String> = (0..count)
        .map(|i| format!("{tag:08x}-0000-4000-8000-{i:012x}"))
        .collect();
    let doc = serde_json::json!({
        "cells": cells.iter().enumerate().map(|(i, guid)| serde_json::json!({
            "guid": guid,
            "lpuGuid": ADULT_LPU,
            "docGuid": THERAPIST,
            "beginTime": format!("2031-03-{:02}T{:02}:{:02}:00+03:00", 1 + i % 28, 8 + (i / 28) % 10, (i / 280) % 60),
            "endTime": format!("2031-03-{:02}T{:02}:{:02}:00+03:00", 1 + i % 28, 9 + (i / 28) % 10, (i / 280) % 60),
            "planCount": plan,
        })).collect::<Vec<_>>(),
    });
    put(d, &d.admin_key(), "/admin/schedule", &doc.to_string()).await;
    cells
}

/// The fixture's seed LPU (adult) and children's polyclinic.
pub const ADULT_LPU: &str = "c3c977af-c3b4-4517-9d57-50a6844ec660";
pub const CHILDREN_LPU: &str = "7a1c2f0e-5b3d-4c8e-9f21-0d6b4a8e3c57";
/// The fixture's therapist (the seed's `docGuid`).
pub const THERAPIST: &str = "f05d7650-a2a0-49dc-99f1-bb57829bc46a";
