use super::*;

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn guid(n: u8) -> Guid {
    format!("00000000-0000-4000-8000-0000000000{n:02x}")
        .parse()
        .unwrap()
}

const NOW: &str = "2030-01-01T09:00:00Z";

fn ask() -> ReservationAsk {
    ReservationAsk {
        time_table: TimeTable::Cell(guid(2)),
        age_category: Some(AgeCategory::Adult),
        reserve_minutes: Some(10),
    }
}

fn facts() -> ReservationFacts {
    ReservationFacts {
        lpu_guid: Some(guid(1)),
        lpu: Some(LpuFacts {
            is_children_polyclinic: false,
        }),
        cell: Some(CellFacts {
            lpu_guid: guid(1),
            begins: t("2030-01-02T09:00:00Z"),
            plan_count: 2,
            taken: 1,
            ages: AgeMask::ALL,
        }),
    }
}

fn code(r: Result<Hold, Refusal>) -> u16 {
    r.err().map_or(0, |e| e.code())
}

#[test]
fn a_valid_reservation_holds_the_cell_for_its_minutes() {
    let hold = reserve(&ask(), &facts(), t(NOW)).unwrap();
    assert_eq!(hold.cell, guid(2));
    assert_eq!(hold.expires, t("2030-01-01T09:10:00Z"));
    for minutes in [1, 60] {
        let a = ReservationAsk {
            reserve_minutes: Some(minutes),
            ..ask()
        };
        let hold = reserve(&a, &facts(), t(NOW)).unwrap();
        assert_eq!(hold.expires, t(NOW) + Duration::minutes(minutes));
    }
}

#[test]
fn each_rule_answers_its_code() {
    let now = t(NOW);
    let with = |f: &dyn Fn(&mut ReservationAsk, &mut ReservationFacts)| {
        let (mut a, mut x) = (ask(), facts());
        f(&mut a, &mut x);
        code(reserve(&a, &x, now))
    };
    assert_eq!(with(&|a, _| a.time_table = TimeTable::Empty), 4036);
    assert_eq!(with(&|a, _| a.time_table = TimeTable::NotAGuid), 4040);
    assert_eq!(with(&|_, x| x.lpu = None), 4040);
    assert_eq!(with(&|_, x| x.lpu_guid = None), 4040);
    assert_eq!(with(&|_, x| x.cell = None), 4040);
    assert_eq!(
        with(&|_, x| x.cell.as_mut().unwrap().lpu_guid = guid(9)),
        4040,
        "a cell of another LPU"
    );
    assert_eq!(
        with(&|_, x| x.lpu.as_mut().unwrap().is_children_polyclinic = true),
        4005
    );
    assert_eq!(
        with(&|a, x| {
            a.age_category = Some(AgeCategory::Teen);
            x.lpu.as_mut().unwrap().is_children_polyclinic = true;
        }),
        0,
        "a children's polyclinic takes teens"
    );
    assert_eq!(
        with(&|_, x| x.cell.as_mut().unwrap().ages =
            AgeMask::of([AgeCategory::Child, AgeCategory::Teen]).unwrap()),
        4029
    );
    assert_eq!(with(&|_, x| x.cell.as_mut().unwrap().taken = 2), 4009);
    assert_eq!(with(&|_, x| x.cell.as_mut().unwrap().taken = 3), 4009);
    assert_eq!(with(&|_, x| x.cell.as_mut().unwrap().begins = now), 4009);
    assert_eq!(
        with(&|_, x| x.cell.as_mut().unwrap().begins = now + Duration::microseconds(1)),
        0
    );
    for bad in [Some(0), Some(61), Some(-1), None] {
        assert_eq!(with(&|a, _| a.reserve_minutes = bad), 4000, "{bad:?}");
    }
    assert_eq!(with(&|a, _| a.age_category = None), 4000);
}

#[test]
fn a_request_breaking_two_rules_gets_the_first_rules_code() {
    let now = t(NOW);
    // Every rule broken at once, then each taken back in order: the code moves down the
    // SPEC §7 table one rule at a time.
    let mut a = ReservationAsk {
        time_table: TimeTable::Empty,
        age_category: Some(AgeCategory::Adult),
        reserve_minutes: Some(0),
    };
    let mut x = facts();
    x.lpu.as_mut().unwrap().is_children_polyclinic = true;
    let cell = x.cell.as_mut().unwrap();
    cell.ages = AgeMask::of([AgeCategory::Child]).unwrap();
    cell.taken = 2;
    assert_eq!(code(reserve(&a, &x, now)), 4036);
    a.time_table = TimeTable::Cell(guid(3));
    assert_eq!(
        code(reserve(
            &a,
            &ReservationFacts {
                cell: None,
                ..x.clone()
            },
            now
        )),
        4040
    );
    a.time_table = TimeTable::Cell(guid(2));
    assert_eq!(code(reserve(&a, &x, now)), 4005);
    x.lpu.as_mut().unwrap().is_children_polyclinic = false;
    assert_eq!(code(reserve(&a, &x, now)), 4029);
    x.cell.as_mut().unwrap().ages = AgeMask::ALL;
    assert_eq!(code(reserve(&a, &x, now)), 4009);
    x.cell.as_mut().unwrap().taken = 0;
    assert_eq!(code(reserve(&a, &x, now)), 4000);
    a.reserve_minutes = Some(5);
    assert_eq!(code(reserve(&a, &x, now)), 0);
    // An unreadable age category is a 4000, after the capacity rule.
    a.age_category = None;
    x.cell.as_mut().unwrap().taken = 2;
    assert_eq!(code(reserve(&a, &x, now)), 4009);
}

#[test]
fn every_refusal_has_the_seeds_status_type_and_message() {
    let cases = [
        (
            Refusal::BadSignature,
            5009,
            403,
            "Error",
            "Подпись запроса некорректна",
        ),
        (
            Refusal::EmptyTimeTable,
            4036,
            400,
            "Error",
            "Время и гайд врача или гайд ячейки расписания не должны быть пустыми",
        ),
        (
            Refusal::NotFound,
            4040,
            404,
            "Error",
            "ЛПУ, ячейка расписания или запись на прием не найдены",
        ),
        (
            Refusal::ChildrenOnly,
            4005,
            400,
            "Validation",
            "Вы пытаетесь записаться в детское учреждение. Запись пациентов старше 18 лет запрещена.",
        ),
        (
            Refusal::AgeGroup,
            4029,
            400,
            "Validation",
            "Запись недоступна для данной возрастной группы. Сотрудниками МО было установлено ограничение по возрасту при записи на прием.",
        ),
        (
            Refusal::Taken,
            4009,
            400,
            "Validation",
            "Это время уже занято. Выберите другое свободное время приема.",
        ),
        (
            Refusal::Invalid("x".into()),
            4000,
            400,
            "Validation",
            "Некорректный запрос: x",
        ),
        (
            Refusal::SelfBookingForbidden,
            4007,
            400,
            "Validation",
            "Вам запрещена самостоятельная запись на прием через интернет или инфомат. Для записи на прием обратитесь в регистратуру медицинского учреждения лично или по телефону.",
        ),
        (
            Refusal::NotOnDispensaryRegister,
            4007,
            400,
            "Validation",
            "Вы не состоите на диспансерном учете у данного специалиста. Запись невозможна.",
        ),
        (
            Refusal::AlreadyBooked {
                doctor: "Петрова М. И.".into(),
                at: "18.04.2019 08:45".into(),
            },
            4008,
            400,
            "Validation",
            "Вы уже записаны Петрова М. И. на 18.04.2019 08:45. Запрещено иметь более одной активной записи на прием на одну специальность.",
        ),
    ];
    for (refusal, code, status, kind, message) in cases {
        assert_eq!(refusal.code(), code, "{refusal:?}");
        assert_eq!(refusal.status(), status, "{refusal:?}");
        assert_eq!(refusal.kind().as_str(), kind, "{refusal:?}");
        assert_eq!(refusal.message(), message, "{refusal:?}");
    }
}

fn held(expires: &str) -> TicketFacts {
    TicketFacts {
        lpu_guid: guid(1),
        state: TicketState::Held,
        expires_at: t(expires),
        policy_number: None,
    }
}

#[test]
fn a_hold_lapses_at_its_expiry_whether_swept_or_not() {
    let h = held("2030-01-01T09:10:00Z");
    assert_eq!(state_at(&h, t("2030-01-01T09:09:59Z")), TicketState::Held);
    assert_eq!(
        state_at(&h, t("2030-01-01T09:10:00Z")),
        TicketState::Expired
    );
    assert!(lapsed_unswept(&h, t("2030-01-01T09:10:00Z")));
    assert!(!lapsed_unswept(&h, t("2030-01-01T09:09:00Z")));
    let appointment = TicketFacts {
        state: TicketState::Appointment,
        ..h.clone()
    };
    assert_eq!(
        state_at(&appointment, t("2031-01-01T00:00:00Z")),
        TicketState::Appointment,
        "an appointment never lapses"
    );
    assert!(!lapsed_unswept(&appointment, t("2031-01-01T00:00:00Z")));
    for s in [
        TicketState::Held,
        TicketState::Appointment,
        TicketState::Cancelled,
        TicketState::Expired,
    ] {
        assert_eq!(TicketState::parse(s.as_str()), Some(s));
    }
    assert_eq!(TicketState::parse("Held"), None);
    assert_eq!(TicketState::Held.history_word(), "Reserved");
    assert_eq!(TicketState::Appointment.history_word(), "Appointment");
    assert_eq!(TicketState::Cancelled.history_word(), "Cancelled");
    assert_eq!(TicketState::Expired.history_word(), "Expired");
}

fn patient() -> PatientAsk {
    PatientAsk {
        policy_number: "7700000000000001".into(),
        birth_date: NaiveDate::from_ymd_opt(1980, 5, 17).unwrap(),
        full_name: "Иванов Иван Иванович".into(),
    }
}

fn confirm_facts() -> ConfirmFacts {
    ConfirmFacts {
        ticket: Some(held("2030-01-01T09:10:00Z")),
        lpu_guid: Some(guid(1)),
        patient: Some(PatientFacts {
            birth_date: NaiveDate::from_ymd_opt(1980, 5, 17).unwrap(),
            full_name: "иванов  Иван иванович".into(),
            self_booking_forbidden: false,
            dispensary: vec!["Кардиология".into()],
        }),
        dispensary_required: false,
        speciality: "кардиология".into(),
        appointments: vec![OtherAppointment {
            speciality: "неврология".into(),
            doctor: "Сидоров П. П.".into(),
            at: "03.01.2030 10:00".into(),
        }],
    }
}

fn confirm_code(
    p: Result<&PatientAsk, String>,
    f: &ConfirmFacts,
    now: &str,
) -> Result<Confirmation, u16> {
    confirm(p, f, t(now)).map_err(|e| e.code())
}

#[test]
fn confirming_a_live_hold_for_a_known_or_unknown_patient() {
    let p = patient();
    assert_eq!(
        confirm_code(Ok(&p), &confirm_facts(), NOW),
        Ok(Confirmation::Confirm)
    );
    let unknown = ConfirmFacts {
        patient: None,
        ..confirm_facts()
    };
    assert_eq!(
        confirm_code(Ok(&p), &unknown, NOW),
        Ok(Confirmation::Confirm)
    );
    let required = ConfirmFacts {
        dispensary_required: true,
        ..confirm_facts()
    };
    assert_eq!(
        confirm_code(Ok(&p), &required, NOW),
        Ok(Confirmation::Confirm),
        "registered for the speciality (case aside)"
    );
}

#[test]
fn each_confirmation_rule_answers_its_code_in_order() {
    let p = patient();
    let with = |f: &dyn Fn(&mut ConfirmFacts)| {
        let mut x = confirm_facts();
        f(&mut x);
        confirm_code(Ok(&p), &x, NOW)
    };
    assert_eq!(with(&|x| x.ticket = None), Err(4040));
    assert_eq!(with(&|x| x.lpu_guid = Some(guid(7))), Err(4040));
    assert_eq!(with(&|x| x.lpu_guid = None), Err(4040));
    assert_eq!(
        confirm_code(Err("policyNumber".into()), &confirm_facts(), NOW),
        Err(4000)
    );
    assert_eq!(
        with(&|x| x.patient.as_mut().unwrap().birth_date =
            NaiveDate::from_ymd_opt(1981, 5, 17).unwrap()),
        Err(4000)
    );
    assert_eq!(
        with(&|x| x.patient.as_mut().unwrap().full_name = "Петров Иван Иванович".into()),
        Err(4000)
    );
    assert_eq!(
        with(&|x| x.ticket.as_mut().unwrap().expires_at = t(NOW)),
        Err(4009),
        "a lapsed hold"
    );
    assert_eq!(
        with(&|x| x.ticket.as_mut().unwrap().state = TicketState::Cancelled),
        Err(4009)
    );
    assert_eq!(
        with(&|x| x.ticket.as_mut().unwrap().state = TicketState::Expired),
        Err(4009)
    );
    assert_eq!(
        with(&|x| {
            let t = x.ticket.as_mut().unwrap();
            t.state = TicketState::Appointment;
            t.policy_number = Some("other".into());
        }),
        Err(4009),
        "another patient's appointment"
    );
    assert_eq!(
        with(&|x| {
            let t = x.ticket.as_mut().unwrap();
            t.state = TicketState::Appointment;
            t.policy_number = Some("7700000000000001".into());
        }),
        Ok(Confirmation::AlreadyConfirmed)
    );
    assert_eq!(
        with(&|x| x.patient.as_mut().unwrap().self_booking_forbidden = true),
        Err(4007)
    );
    let not_registered = |x: &mut ConfirmFacts| {
        x.dispensary_required = true;
        x.speciality = "неврология".into();
    };
    assert_eq!(with(&not_registered), Err(4007));
    assert_eq!(
        with(&|x| {
            x.dispensary_required = true;
            x.patient = None;
        }),
        Err(4007),
        "an unknown patient is on no register"
    );
    let other = OtherAppointment {
        speciality: "Кардиология".into(),
        doctor: "Петрова М. И.".into(),
        at: "02.01.2030 12:00".into(),
    };
    let booked = confirm(
        Ok(&p),
        &ConfirmFacts {
            appointments: {
                let mut list = confirm_facts().appointments;
                list.push(other.clone());
                list
            },
            ..confirm_facts()
        },
        t(NOW),
    );
    assert_eq!(
        booked,
        Err(Refusal::AlreadyBooked {
            doctor: other.doctor.clone(),
            at: other.at.clone()
        })
    );
    // The order: a forbidden patient with another appointment gets 4007, a lapsed hold
    // of a forbidden patient 4009, a mismatched patient on a missing ticket 4040.
    let mut x = confirm_facts();
    x.patient.as_mut().unwrap().self_booking_forbidden = true;
    x.appointments.push(other);
    assert_eq!(confirm_code(Ok(&p), &x, NOW), Err(4007));
    x.ticket.as_mut().unwrap().state = TicketState::Cancelled;
    assert_eq!(confirm_code(Ok(&p), &x, NOW), Err(4009));
    x.patient.as_mut().unwrap().full_name = "Другой".into();
    assert_eq!(confirm_code(Ok(&p), &x, NOW), Err(4000));
    x.ticket = None;
    assert_eq!(confirm_code(Ok(&p), &x, NOW), Err(4040));
}

#[test]
fn cancelling_frees_a_live_ticket_and_leaves_an_ended_one() {
    let now = t(NOW);
    let lpu = guid(1);
    let h = held("2030-01-01T09:10:00Z");
    assert_eq!(
        cancel(Some(&h), Some(&lpu), now),
        Ok(Cancellation::Cancel {
            was_appointment: false
        })
    );
    let a = TicketFacts {
        state: TicketState::Appointment,
        ..h.clone()
    };
    assert_eq!(
        cancel(Some(&a), Some(&lpu), now),
        Ok(Cancellation::Cancel {
            was_appointment: true
        })
    );
    for state in [TicketState::Cancelled, TicketState::Expired] {
        let ended = TicketFacts { state, ..h.clone() };
        assert_eq!(
            cancel(Some(&ended), Some(&lpu), now),
            Ok(Cancellation::Unchanged)
        );
    }
    assert_eq!(
        cancel(Some(&h), Some(&lpu), t("2030-01-01T09:10:00Z")),
        Ok(Cancellation::Unchanged),
        "a lapsed hold"
    );
    assert_eq!(cancel(None, Some(&lpu), now), Err(Refusal::NotFound));
    assert_eq!(
        cancel(Some(&h), Some(&guid(5)), now),
        Err(Refusal::NotFound)
    );
    assert_eq!(cancel(Some(&h), None, now), Err(Refusal::NotFound));
}
