//! The `diagnostics` route: proves the dialplan ↔ daemon wiring by setting
//! `MEDCALL_VERSION`, `MEDCALL_PBX` and, last, `MEDCALL_STATUS=OK` on the channel.
//!
//! Owns nothing but those three variables. It must never do more than read the
//! daemon's static knowledge: it runs on live calls.

use std::sync::Arc;

use crate::agi::{Handler, HandlerFuture, Request, Session};

use super::{PbxAddresses, pbx_label};

/// Handler of `AGI(${MEDCALL_AGI}/diagnostics)`.
#[derive(Debug, Clone)]
pub struct Diagnostics {
    pbxs: Arc<PbxAddresses>,
}

impl Diagnostics {
    pub fn new(pbxs: Arc<PbxAddresses>) -> Diagnostics {
        Diagnostics { pbxs }
    }
}

impl Handler for Diagnostics {
    fn call<'s>(&'s self, request: Request, session: &'s mut Session) -> HandlerFuture<'s> {
        Box::pin(async move {
            let pbx = pbx_label(self.pbxs.name_for(request.peer.ip()));
            session
                .set_variable("MEDCALL_VERSION", env!("CARGO_PKG_VERSION"))
                .await?;
            session.set_variable("MEDCALL_PBX", pbx).await?;
            session.set_variable("MEDCALL_STATUS", "OK").await?;
            tracing::info!(channel = %request.channel, uniqueid = %request.uniqueid, pbx, "AGI diagnostics");
            Ok(())
        })
    }
}
