//! The `consultation-join` route: a voip patient dials the consultation's join code and
//! the dialplan asks medcall whether (and where) they may join.
//!
//! It sets `MEDCALL_STATUS`: `OK` (with `MEDCALL_CONFERENCE`, the conference to join,
//! and `MEDCALL_CONSULTATION_ID`), `INVALID` (no consultation has this code, or the code
//! is malformed), `EARLY` (it has not started), `INUSE` (the patient is in already),
//! `ENDED`, or `ERROR` (medcall could not tell). The dialplan joins or says why.

use crate::agi::{Handler, HandlerFuture, Request, Session};
use crate::consultation::run::{ConsultationHandle, JoinVerdict, VAR_CONSULTATION};

/// The channel variable naming the conference to join.
pub const VAR_CONFERENCE: &str = "MEDCALL_CONFERENCE";

/// Handler of `AGI(${MEDCALL_AGI}/consultation-join,${CODE})`.
#[derive(Debug, Clone)]
pub struct ConsultationJoin {
    consultations: Option<ConsultationHandle>,
}

impl ConsultationJoin {
    pub fn new(consultations: Option<ConsultationHandle>) -> ConsultationJoin {
        ConsultationJoin { consultations }
    }
}

/// A join code as dialled: 4 to 12 digits (medcall issues six).
fn code(request: &Request) -> Option<String> {
    let text = request
        .args
        .first()
        .map(|a| a.to_str_lossy().into_owned())
        .unwrap_or_else(|| request.extension.clone());
    ((4..=12).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_digit())).then_some(text)
}

impl Handler for ConsultationJoin {
    fn call<'s>(&'s self, request: Request, session: &'s mut Session) -> HandlerFuture<'s> {
        Box::pin(async move {
            let verdict = match (&self.consultations, code(&request)) {
                (_, None) => Ok(JoinVerdict::Invalid),
                (None, Some(_)) => Ok(JoinVerdict::Invalid),
                (Some(c), Some(code)) => c.join(code, request.uniqueid.clone()).await,
            };
            match verdict {
                Ok(verdict) => {
                    if let JoinVerdict::Join { conference, id } = &verdict {
                        session.set_variable(VAR_CONFERENCE, conference).await?;
                        session
                            .set_variable(VAR_CONSULTATION, &id.to_string())
                            .await?;
                    }
                    tracing::info!(uniqueid = %request.uniqueid, status = verdict.status(), "consultation join");
                    session
                        .set_variable("MEDCALL_STATUS", verdict.status())
                        .await?;
                }
                Err(e) => {
                    tracing::error!(error = %e, "consultation-join failed");
                    session.set_variable("MEDCALL_STATUS", "ERROR").await?;
                }
            }
            Ok(())
        })
    }
}
