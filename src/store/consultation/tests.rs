use chrono::Duration;

use super::*;
use crate::consultation::lifecycle::{self, Event, Rules};

async fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("medcall.db")).unwrap();
    store
        .call(|conn| {
            conn.execute_batch(
                "INSERT INTO directory_doctors (id, guid, full_name, role, speciality, endpoint, updated_at) \
                 VALUES (7, '6f1c2d4e-0000-4000-8000-000000000007', 'Доктор', '', '', 'Local/answer@fake-phones/n', '2026-01-01T00:00:00.000000Z')",
            )?;
            Ok(())
        })
        .await
        .unwrap();
    (dir, store)
}

fn voip(video: bool) -> NewConsultation {
    NewConsultation {
        kind: Kind::Voip,
        doctor: DoctorId::new(7).unwrap(),
        patient_full_name: "Иванов Иван".into(),
        video_support: Some(video),
        patient_phone: None,
        begin_at: Some(Utc::now() + Duration::hours(1)),
        duration_min: 30,
        notify_url: None,
    }
}

fn callback() -> NewConsultation {
    NewConsultation {
        kind: Kind::Callback,
        video_support: None,
        patient_phone: Some(Phone::new("7", "9001234567").unwrap()),
        ..voip(false)
    }
}

#[tokio::test]
async fn a_created_consultation_reads_back_with_its_start_job() {
    let (_d, store) = store().await;
    let attachment = Attachment {
        file_name: "anamnesis.pdf".into(),
        content_type: "application/pdf".into(),
        size: 18423,
        sha256: "ab".repeat(32),
    };
    let new = voip(true);
    let begin = new.begin_at.unwrap();
    let c = store
        .create_consultation(new, Some(attachment.clone()), "main".into())
        .await
        .unwrap();
    assert_eq!(c.status, Status::Scheduled);
    assert_eq!(c.video_support, Some(true));
    assert_eq!(c.attachment, Some(attachment));
    assert_eq!(c.join_code.as_ref().map(String::len), Some(6));
    assert_eq!(c.history, vec![(Status::Scheduled, c.created)]);
    assert_eq!(c.begin_at, chrono::SubsecRound::trunc_subsecs(begin, 6));
    assert_eq!(
        store.consultation(Kind::Voip, c.id).await.unwrap(),
        Some(c.clone())
    );
    assert_eq!(
        store.consultation(Kind::Callback, c.id).await.unwrap(),
        None
    );
    let code = c.join_code.clone().unwrap();
    assert_eq!(
        store
            .consultation_by_join_code(code)
            .await
            .unwrap()
            .map(|f| f.id),
        Some(c.id)
    );
    // The start job waits for beginAtUtc.
    assert!(store.due_jobs(Utc::now(), 10).await.unwrap().is_empty());
    let due = store
        .due_jobs(begin + Duration::seconds(1), 10)
        .await
        .unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!((due[0].kind, due[0].consultation), (JobKind::Start, c.id));
    assert_eq!(store.next_job_due().await.unwrap(), Some(due[0].due));

    let cb = store
        .create_consultation(callback(), None, "main".into())
        .await
        .unwrap();
    assert_eq!(
        cb.patient_phone,
        Some(Phone::new("7", "9001234567").unwrap())
    );
    assert_eq!((cb.video_support, cb.join_code.clone()), (None, None));
}

#[tokio::test]
async fn an_unknown_doctor_writes_nothing() {
    let (_d, store) = store().await;
    let mut new = voip(false);
    new.doctor = DoctorId::new(8).unwrap();
    let e = store
        .create_consultation(new, None, "main".into())
        .await
        .unwrap_err();
    assert!(
        matches!(e, CreateError::UnknownDoctor(d) if d.get() == 8),
        "{e}"
    );
    let page = store.consultations(query(Kind::Voip)).await.unwrap();
    assert_eq!((page.items.len(), page.total), (0, 0));
    assert_eq!(store.next_job_due().await.unwrap(), None);
}

#[tokio::test]
async fn a_step_is_stored_whole_with_its_history_and_jobs() {
    let (_d, store) = store().await;
    let c = store
        .create_consultation(voip(false), None, "main".into())
        .await
        .unwrap();
    let start = store.due_jobs(c.begin_at, 10).await.unwrap()[0];
    let s = lifecycle::step(
        &c,
        &Event::Due(JobKind::Start),
        c.begin_at,
        &Rules::default(),
    );
    store
        .write_consultation_steps(vec![StepWrite {
            next: s.next.clone(),
            changed: s.changed,
            schedule: s.schedule.clone(),
            unschedule: s.unschedule.clone(),
            fired: Some(start.id),
        }])
        .await
        .unwrap();
    let stored = store.consultation_any(c.id).await.unwrap().unwrap();
    assert_eq!(stored, s.next);
    assert_eq!(stored.status, Status::CallingDoctor);
    assert_eq!(stored.history.len(), 2);
    let jobs = store
        .due_jobs(c.begin_at + Duration::hours(1), 10)
        .await
        .unwrap();
    assert_eq!(
        jobs.iter().map(|j| j.kind).collect::<Vec<_>>(),
        vec![JobKind::DoctorDeadline]
    );
    assert_eq!(
        store.running_consultations().await.unwrap(),
        vec![stored.clone()]
    );
    // The end drops every job and frees the join code.
    let end = lifecycle::step(
        &stored,
        &Event::Terminate {
            reason: Some("r".into()),
        },
        c.begin_at,
        &Rules::default(),
    );
    store
        .write_consultation_steps(vec![StepWrite {
            next: end.next.clone(),
            changed: end.changed,
            schedule: end.schedule.clone(),
            unschedule: end.unschedule.clone(),
            fired: None,
        }])
        .await
        .unwrap();
    assert_eq!(store.next_job_due().await.unwrap(), None);
    assert!(store.running_consultations().await.unwrap().is_empty());
    let code = c.join_code.clone().unwrap();
    let ended = store
        .consultation_by_join_code(code)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ended.status, Status::Terminated);
    let page = store
        .consultations(ListQuery {
            statuses: vec![Status::Terminated],
            ..query(Kind::Voip)
        })
        .await
        .unwrap();
    assert_eq!((page.items.len(), page.total), (1, 1));
    assert_eq!(page.items[0].terminate_reason.as_deref(), Some("r"));
}

fn query(kind: Kind) -> ListQuery {
    ListQuery {
        kind,
        ids: Vec::new(),
        statuses: Vec::new(),
        order: Order::Created,
        asc: false,
        limit: 20,
        offset: 0,
        video: None,
    }
}

/// Sets consultation `id`'s status directly (the search tests need many statuses).
async fn set_status(store: &Store, id: i64, status: Status) {
    store
        .call(move |conn| {
            conn.execute(
                "UPDATE consultations SET status = ?1 WHERE id = ?2",
                rusqlite::params![status.rank(), id],
            )?;
            Ok(())
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn get_all_filters_orders_pages_and_counts() {
    let (_d, store) = store().await;
    let mut ids = Vec::new();
    // 12 voip (every third with video), 3 callbacks; statuses cycle through four.
    let cycle = [
        Status::Scheduled,
        Status::Completed,
        Status::Missed,
        Status::InProgress,
    ];
    for i in 0..12 {
        let c = store
            .create_consultation(voip(i % 3 == 0), None, "main".into())
            .await
            .unwrap();
        set_status(&store, c.id, cycle[i % 4]).await;
        ids.push(c.id);
    }
    for _ in 0..3 {
        store
            .create_consultation(callback(), None, "main".into())
            .await
            .unwrap();
    }
    let ids_of = |p: &ListPage| p.items.iter().map(|c| c.id).collect::<Vec<_>>();
    let all = store.consultations(query(Kind::Voip)).await.unwrap();
    assert_eq!(all.total, 12);
    let mut newest_first = ids.clone();
    newest_first.reverse();
    assert_eq!(ids_of(&all), newest_first);
    let asc = store
        .consultations(ListQuery {
            asc: true,
            limit: 5,
            offset: 2,
            ..query(Kind::Voip)
        })
        .await
        .unwrap();
    assert_eq!(ids_of(&asc), ids[2..7].to_vec());
    assert_eq!(asc.total, 12);
    // Statuses: two of them, merged in creation order.
    let two = store
        .consultations(ListQuery {
            statuses: vec![Status::Missed, Status::Completed, Status::Missed],
            asc: true,
            limit: 3,
            offset: 1,
            ..query(Kind::Voip)
        })
        .await
        .unwrap();
    let expected: Vec<i64> = ids
        .iter()
        .enumerate()
        .filter(|(i, _)| matches!(cycle[i % 4], Status::Missed | Status::Completed))
        .map(|(_, id)| *id)
        .collect();
    assert_eq!(ids_of(&two), expected[1..4].to_vec());
    assert_eq!(two.total, 6);
    // Order by status: lifecycle order, then creation.
    let by_status = store
        .consultations(ListQuery {
            order: Order::Status,
            asc: true,
            limit: 100,
            ..query(Kind::Voip)
        })
        .await
        .unwrap();
    let ranks: Vec<i64> = by_status.items.iter().map(|c| c.status.rank()).collect();
    let mut sorted = ranks.clone();
    sorted.sort();
    assert_eq!(ranks, sorted);
    assert_eq!(by_status.items[0].id, ids[0]);
    let by_status_desc = store
        .consultations(ListQuery {
            order: Order::Status,
            statuses: vec![Status::Scheduled, Status::Missed],
            limit: 100,
            ..query(Kind::Voip)
        })
        .await
        .unwrap();
    assert_eq!(by_status_desc.items[0].status, Status::Missed);
    assert_eq!(
        by_status_desc.items.last().unwrap().status,
        Status::Scheduled
    );
    assert_eq!(by_status_desc.items.last().unwrap().id, ids[0]);
    // Video.
    let video = store
        .consultations(ListQuery {
            video: Some(true),
            ..query(Kind::Voip)
        })
        .await
        .unwrap();
    assert_eq!(video.total, 4);
    assert!(video.items.iter().all(|c| c.video_support == Some(true)));
    let no_video_missed = store
        .consultations(ListQuery {
            video: Some(false),
            statuses: vec![Status::Missed],
            ..query(Kind::Voip)
        })
        .await
        .unwrap();
    assert_eq!(no_video_missed.total, 2);
    // Ids, with and without other filters; another kind's id is not found.
    let named = store
        .consultations(ListQuery {
            ids: vec![ids[0], ids[1], ids[5], 9999],
            asc: true,
            ..query(Kind::Voip)
        })
        .await
        .unwrap();
    assert_eq!(ids_of(&named), vec![ids[0], ids[1], ids[5]]);
    assert_eq!(named.total, 3);
    let named_missed = store
        .consultations(ListQuery {
            ids: vec![ids[1], ids[2]],
            statuses: vec![Status::Missed],
            ..query(Kind::Voip)
        })
        .await
        .unwrap();
    assert_eq!(
        (ids_of(&named_missed), named_missed.total),
        (vec![ids[2]], 1)
    );
    let callbacks = store.consultations(query(Kind::Callback)).await.unwrap();
    assert_eq!((callbacks.items.len(), callbacks.total), (3, 3));
    // History comes with every item.
    assert!(all.items.iter().all(|c| c.history.len() == 1));
}

/// Every documented filter and order is answered from an index: no full scan of the
/// table, and no sort of it (a sort of the merged per-status pages is bounded).
#[tokio::test]
async fn get_all_never_scans_the_table() {
    let (_d, store) = store().await;
    let mut cases = Vec::new();
    for kind in [Kind::Voip, Kind::Callback] {
        for order in [Order::Created, Order::Status] {
            for asc in [false, true] {
                for statuses in [
                    vec![],
                    vec![Status::Completed],
                    vec![Status::Scheduled, Status::Missed],
                ] {
                    for video in [None, Some(true)] {
                        if kind == Kind::Callback && video.is_some() {
                            continue;
                        }
                        for ids in [vec![], vec![1, 2, 3]] {
                            cases.push(ListQuery {
                                kind,
                                ids,
                                statuses: statuses.clone(),
                                order,
                                asc,
                                limit: 20,
                                offset: 40,
                                video,
                            });
                        }
                    }
                }
            }
        }
    }
    let plans = store
        .call(move |conn| {
            let mut out = Vec::new();
            for q in cases {
                let (sql, params) = page_sql(&q);
                let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))?;
                let details: Vec<String> = stmt
                    .query_map(params_from_iter(params), |r| r.get::<_, String>(3))?
                    .collect::<rusqlite::Result<_>>()?;
                out.push((q, details));
            }
            Ok(out)
        })
        .await
        .unwrap();
    for (q, details) in plans {
        let text = details.join(" | ");
        assert!(
            !details.iter().any(|d| d.starts_with("SCAN consultations")),
            "{q:?}: {text}"
        );
        assert!(text.contains("consultations USING"), "{q:?}: {text}");
        // A sort is allowed only over the bounded per-status pages or the named ids.
        if q.ids.is_empty()
            && q.statuses.len() < 2
            && (q.order != Order::Status || q.statuses.is_empty())
        {
            assert!(!text.contains("TEMP B-TREE"), "{q:?}: {text}");
        }
    }
}
