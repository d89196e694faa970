//! The `inbound` route: every inbound call passes here first. medcall gives the call its
//! call id (the id of `/api/calls/{id}`, which `/api/events?call=` and `call_asterisk`
//! take), records the caller's number, and sets `MEDCALL_CALL_ID` and `MEDCALL_STATUS`.
//!
//! When the directory routes the dialled number to a team's thread, the caller is
//! admitted to that thread's conversation call (created, direction `inbound`, when none
//! is active) and the route sets `MEDCALL_THREAD_ID` (the conference to join),
//! `MEDCALL_CALL_KEY` and `MEDCALL_USER_PROFILE`; the dialplan then joins the
//! conference. Without a route, or when the call cannot take the caller (ending, PBX
//! unreachable), `MEDCALL_THREAD_ID` stays empty and the call goes on as before.

use std::sync::Arc;

use super::{PbxAddresses, pbx_label};
use crate::agi::{AgiError, Handler, HandlerFuture, Request, Session};
use crate::conference::ConferenceHandle;
use crate::conference::engine::{Answer, Command};
use crate::conference::observe::{VAR_CALL_KEY, VAR_PROFILE, VAR_THREAD};
use crate::store::Store;

/// Handler of `AGI(${MEDCALL_AGI}/inbound,${EXTEN})`.
#[derive(Debug, Clone)]
pub struct Inbound {
    store: Store,
    pbxs: Arc<PbxAddresses>,
    conference: Option<ConferenceHandle>,
}

impl Inbound {
    pub fn new(
        store: Store,
        pbxs: Arc<PbxAddresses>,
        conference: Option<ConferenceHandle>,
    ) -> Inbound {
        Inbound {
            store,
            pbxs,
            conference,
        }
    }

    /// Admits the caller to the thread the dialled number routes to, if any.
    async fn join_thread(
        &self,
        request: &Request,
        session: &mut Session,
        dialled: &str,
    ) -> Result<(), AgiError> {
        let Some(conference) = &self.conference else {
            return Ok(());
        };
        let (team, thread) = match self.store.inbound_route(dialled.to_string()).await {
            Ok(Some(route)) => route,
            Ok(None) => return Ok(()),
            Err(e) => {
                tracing::error!(error = %e, %dialled, "inbound: the route lookup failed");
                return Ok(());
            }
        };
        let command = Command::AdmitCaller {
            thread: thread.clone(),
            team,
            uniqueid: request.uniqueid.clone(),
            channel: request.channel.clone(),
        };
        match conference.execute(command).await {
            Ok(Answer::Admitted { key, .. }) => {
                session.set_variable(VAR_CALL_KEY, &key.to_string()).await?;
                session
                    .set_variable(VAR_PROFILE, conference.user_profile())
                    .await?;
                session.set_variable(VAR_THREAD, thread.as_str()).await?;
                tracing::info!(%thread, %dialled, uniqueid = %request.uniqueid, "inbound caller admitted to the thread's call");
            }
            Ok(other) => {
                tracing::warn!(%thread, %dialled, answer = ?other, "inbound caller not admitted");
            }
            Err(e) => tracing::warn!(%thread, error = %e, "inbound caller not admitted"),
        }
        Ok(())
    }
}

impl Handler for Inbound {
    fn call<'s>(&'s self, request: Request, session: &'s mut Session) -> HandlerFuture<'s> {
        Box::pin(async move {
            let pbx = pbx_label(self.pbxs.name_for(request.peer.ip())).to_string();
            // The call is the Linkedid group; AGI's environment may not carry it.
            let linkedid = if request.linkedid.is_empty() {
                session
                    .get_variable("CHANNEL(linkedid)")
                    .await?
                    .map(|v| v.to_str_lossy().into_owned())
                    .filter(|v| !v.is_empty())
                    .unwrap_or_else(|| request.uniqueid.clone())
            } else {
                request.linkedid.clone()
            };
            let caller = request.caller_id.number.to_str_lossy().into_owned();
            let dialled = request
                .args
                .first()
                .map(|a| a.to_str_lossy().into_owned())
                .unwrap_or_else(|| request.extension.clone());
            match self
                .store
                .register_inbound_call(&pbx, &linkedid, &request.uniqueid, &caller, &dialled)
                .await
            {
                Ok(call_id) => {
                    session
                        .set_variable("MEDCALL_CALL_ID", &call_id.to_string())
                        .await?;
                    session.set_variable("MEDCALL_STATUS", "OK").await?;
                    self.join_thread(&request, session, &dialled).await?;
                    tracing::info!(call_id, %pbx, %linkedid, caller = %caller, "inbound call registered");
                }
                Err(e) => {
                    tracing::error!(error = %e, uniqueid = %request.uniqueid, "inbound: store failed");
                    session.set_variable("MEDCALL_STATUS", "ERROR").await?;
                }
            }
            Ok(())
        })
    }
}
