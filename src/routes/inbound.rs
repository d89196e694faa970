//! The `inbound` route: every inbound call passes here first. medcall gives the call its
//! call id (the id of `/api/calls/{id}`, which `/api/events?call=` and `call_asterisk`
//! take), records the caller's number, and sets `MEDCALL_CALL_ID` and `MEDCALL_STATUS`.

use std::sync::Arc;

use super::{PbxAddresses, pbx_label};
use crate::agi::{Handler, HandlerFuture, Request, Session};
use crate::store::Store;

/// Handler of `AGI(${MEDCALL_AGI}/inbound,${EXTEN})`.
#[derive(Debug, Clone)]
pub struct Inbound {
    store: Store,
    pbxs: Arc<PbxAddresses>,
}

impl Inbound {
    pub fn new(store: Store, pbxs: Arc<PbxAddresses>) -> Inbound {
        Inbound { store, pbxs }
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
