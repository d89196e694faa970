use super::*;

async fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("medcall.db")).unwrap();
    (dir, store)
}

async fn add(store: &Store, consultation: i64, status: &'static str) -> i64 {
    store
        .transaction(move |tx| {
            enqueue(
                tx,
                &NewNotification {
                    consultation_id: consultation,
                    url: "http://crm.example/hook",
                    status,
                    changed_at: Utc::now(),
                },
            )
        })
        .await
        .unwrap()
}

fn ids(list: &[Pending]) -> Vec<i64> {
    list.iter().map(|p| p.id).collect()
}

fn later() -> DateTime<Utc> {
    Utc::now() + chrono::Duration::seconds(1)
}

fn attempt(outcome: Outcome) -> Attempt {
    Attempt {
        at: Utc::now(),
        outcome,
        elapsed_ms: 3,
    }
}

#[tokio::test]
async fn a_rolled_back_change_leaves_no_notification() {
    let (_d, store) = store().await;
    let r = store
        .transaction(|tx| {
            enqueue(
                tx,
                &NewNotification {
                    consultation_id: 1,
                    url: "http://x/",
                    status: "Missed",
                    changed_at: Utc::now(),
                },
            )?;
            Err::<(), _>(StoreError::Inconsistent("the step failed"))
        })
        .await;
    assert!(r.is_err());
    assert!(
        store
            .due_notifications(later(), 10, Vec::new())
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.next_notification_due().await.unwrap(), None);
}

#[tokio::test]
async fn only_each_consultations_oldest_pending_one_is_due() {
    let (_d, store) = store().await;
    let a1 = add(&store, 1, "CallingDoctor").await;
    let a2 = add(&store, 1, "Missed").await;
    let b1 = add(&store, 2, "CallingDoctor").await;
    assert_eq!(
        ids(&store
            .due_notifications(later(), 10, Vec::new())
            .await
            .unwrap()),
        vec![a1, b1]
    );
    // In flight: skipped, the other stream still served.
    assert_eq!(
        ids(&store
            .due_notifications(later(), 10, vec![a1])
            .await
            .unwrap()),
        vec![b1]
    );
    assert_eq!(
        ids(&store
            .due_notifications(later(), 1, Vec::new())
            .await
            .unwrap()),
        vec![a1]
    );
    // a1 fails: retried later; a2 still waits behind it; b1 unaffected.
    let retry_at = Utc::now() + chrono::Duration::seconds(60);
    store
        .record_attempts(vec![(
            a1,
            attempt(Outcome::Answered(500)),
            Step::RetryAt(retry_at),
        )])
        .await
        .unwrap();
    assert_eq!(
        ids(&store
            .due_notifications(later(), 10, Vec::new())
            .await
            .unwrap()),
        vec![b1]
    );
    let list = store.notifications(1).await.unwrap();
    assert_eq!(list[0].attempts.len(), 1);
    assert_eq!(list[0].last_error.as_deref(), Some("HTTP 500"));
    assert!(list[0].next_attempt_at.is_some());
    assert_eq!(
        list[1].next_attempt_at, None,
        "the later one waits, it has no time of its own"
    );
    // Due when its time comes; delivered: the next one of its stream is due.
    let at_retry = retry_at + chrono::Duration::milliseconds(1);
    assert_eq!(
        ids(&store
            .due_notifications(at_retry, 10, vec![b1])
            .await
            .unwrap()),
        vec![a1]
    );
    store
        .record_attempts(vec![(a1, attempt(Outcome::Answered(204)), Step::Delivered)])
        .await
        .unwrap();
    assert_eq!(
        ids(&store
            .due_notifications(later(), 10, vec![b1])
            .await
            .unwrap()),
        vec![a2]
    );
    // Given up: the next goes on, and it is recorded.
    store
        .record_attempts(vec![(
            a2,
            attempt(Outcome::Failed("timeout".into())),
            Step::GiveUp,
        )])
        .await
        .unwrap();
    let list = store.notifications(1).await.unwrap();
    assert_eq!(
        list.iter().map(|n| n.state).collect::<Vec<_>>(),
        vec![DeliveryState::Delivered, DeliveryState::GaveUp]
    );
    assert!(list.iter().all(|n| n.finished_at.is_some()));
    assert_eq!(
        list[1].attempts[0].outcome,
        Outcome::Failed("timeout".into())
    );
    assert_eq!(list[0].attempts.len(), 2);
}

#[tokio::test]
async fn a_resend_goes_to_the_end_of_its_consultations_order_with_the_same_event() {
    let (_d, store) = store().await;
    let a1 = add(&store, 1, "CallingDoctor").await;
    assert!(matches!(
        store.resend_notification(a1).await,
        Err(ResendError::StillPending(_))
    ));
    assert!(matches!(
        store.resend_notification(999).await,
        Err(ResendError::Unknown(999))
    ));
    store
        .record_attempts(vec![(a1, attempt(Outcome::Answered(200)), Step::Delivered)])
        .await
        .unwrap();
    let a2 = add(&store, 1, "Missed").await;
    let again = store.resend_notification(a1).await.unwrap();
    let due = store
        .due_notifications(later(), 10, Vec::new())
        .await
        .unwrap();
    assert_eq!(
        ids(&due),
        vec![a2],
        "the re-send waits behind the pending one"
    );
    let list = store.notifications(1).await.unwrap();
    assert_eq!(list[2].id, again);
    assert_eq!(list[2].resend_of, Some(a1));
    assert_eq!(list[2].event_id, list[0].event_id);
    assert_ne!(list[1].event_id, list[0].event_id);
}

#[tokio::test]
async fn attempts_recorded_together_each_count_for_their_own_notification() {
    let (_d, store) = store().await;
    let a1 = add(&store, 1, "CallingDoctor").await;
    let b1 = add(&store, 2, "CallingDoctor").await;
    let retry_at = later();
    store
        .record_attempts(vec![
            (a1, attempt(Outcome::Answered(200)), Step::Delivered),
            (b1, attempt(Outcome::Answered(503)), Step::RetryAt(retry_at)),
        ])
        .await
        .unwrap();
    let a = store.notifications(1).await.unwrap();
    let b = store.notifications(2).await.unwrap();
    assert_eq!(a[0].state, DeliveryState::Delivered);
    assert_eq!(b[0].state, DeliveryState::Pending);
    assert_eq!(a[0].attempts.len(), 1);
    assert_eq!(b[0].attempts.len(), 1);
    assert_eq!(b[0].attempts[0].outcome, Outcome::Answered(503));
    assert_eq!(
        ids(&store
            .due_notifications(Utc::now(), 10, Vec::new())
            .await
            .unwrap()),
        Vec::<i64>::new(),
        "the retry is not due before its time"
    );
    let at_retry = retry_at + chrono::Duration::milliseconds(1);
    assert_eq!(
        ids(&store
            .due_notifications(at_retry, 10, Vec::new())
            .await
            .unwrap()),
        vec![b1]
    );
}
