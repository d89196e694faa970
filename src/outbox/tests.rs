//! The worker against a real store and a receiver on loopback.

use std::sync::Mutex;

use super::*;
use crate::outbox::model::DeliveryState;
use crate::store::outbox::{NewNotification, enqueue};

/// What the receiver saw: the consultation, the status, signed or not, what it answered.
type Seen = (i64, String, bool, u16);

/// A receiver on loopback that answers 500 to consultation 1's first request and 200
/// to everything else. Returns its URL.
async fn receiver(seen: Arc<Mutex<Vec<Seen>>>) -> String {
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::get(move |h: axum::http::HeaderMap| {
            let seen = Arc::clone(&seen);
            async move {
                let text = |k: &str| {
                    h.get(k)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned()
                };
                let id: i64 = text(headers::CONSULTATION_ID).parse().unwrap_or(-1);
                let status = text(headers::STATUS);
                let signed = !text(headers::SIGNATURE).is_empty();
                let mut seen = seen.lock().unwrap();
                let first_of_1 = id == 1 && !seen.iter().any(|s| s.0 == 1);
                let code = if first_of_1 { 500 } else { 200 };
                seen.push((id, status, signed, code));
                axum::http::StatusCode::from_u16(code).unwrap()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://127.0.0.1:{port}/hook")
}

async fn add(store: &Store, consultation: i64, url: &str, status: &'static str) {
    let url = url.to_owned();
    store
        .transaction(move |tx| {
            enqueue(
                tx,
                &NewNotification {
                    consultation_id: consultation,
                    url: &url,
                    status,
                    changed_at: chrono::Utc::now(),
                },
            )
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn every_notification_is_delivered_signed_in_order_per_consultation_and_retried() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("medcall.db")).unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let url = receiver(Arc::clone(&seen)).await;
    for status in ["CallingDoctor", "InProgress", "Completed"] {
        add(&store, 1, &url, status).await;
    }
    add(&store, 2, &url, "CallingDoctor").await;
    let settings = OutboxSettings {
        key: Some(Secret::new("test-secret")),
        timeout: Duration::from_secs(5),
        retry: RetryPolicy {
            backoff_min: Duration::from_millis(300),
            backoff_max: Duration::from_millis(300),
            jitter: 0.0,
            give_up_after: Duration::from_secs(60),
        },
        guard: NetGuard::parse(&["127.0.0.1/32"], &[] as &[&str]).unwrap(),
        concurrency: 4,
    };
    let (tracker, shutdown) = (TaskTracker::new(), CancellationToken::new());
    spawn(
        store.clone(),
        settings,
        Arc::new(Notify::new()),
        &tracker,
        shutdown.clone(),
    );
    let delivered = |store: Store| async move {
        let mut all = store.notifications(1).await.unwrap();
        all.extend(store.notifications(2).await.unwrap());
        all.iter().all(|n| n.state == DeliveryState::Delivered)
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !delivered(store.clone()).await {
        assert!(
            Instant::now() < deadline,
            "not all delivered: {:?}",
            seen.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seen = seen.lock().unwrap().clone();
    let of = |id: i64| -> Vec<(String, u16)> {
        seen.iter()
            .filter(|s| s.0 == id)
            .map(|s| (s.1.clone(), s.3))
            .collect()
    };
    assert_eq!(
        of(1),
        [
            ("CallingDoctor".to_owned(), 500),
            ("CallingDoctor".to_owned(), 200),
            ("InProgress".to_owned(), 200),
            ("Completed".to_owned(), 200)
        ],
        "a later change waits for the earlier one"
    );
    assert_eq!(of(2), [("CallingDoctor".to_owned(), 200)]);
    // Consultation 2 was not held up by consultation 1's retry (300 ms later).
    let of_2 = seen.iter().position(|s| s.0 == 2).unwrap();
    assert!(of_2 <= 1, "{seen:?}");
    assert!(seen.iter().all(|s| s.2), "every attempt signed");
    let first = &store.notifications(1).await.unwrap()[0];
    assert_eq!(
        first
            .attempts
            .iter()
            .map(|a| a.outcome.clone())
            .collect::<Vec<_>>(),
        [Outcome::Answered(500), Outcome::Answered(200)]
    );
    shutdown.cancel();
    tracker.close();
    tokio::time::timeout(Duration::from_secs(5), tracker.wait())
        .await
        .expect("the worker stops on shutdown");
}
