//! The `number-from-id` route: an operator dials an identifier (`+123456s654321`,
//! `+7000d0`) instead of a number; medcall sets `MEDCALL_NUMBER` (`89001234567`) and
//! `MEDCALL_STATUS` = `OK`, `NOTFOUND`, `INVALID` (or `ERROR` when the store fails), and
//! the dialplan dials the number, so the operator never sees it.

use crate::agi::{Handler, HandlerFuture, Request, Session};
use crate::crm::DialIdent;
use crate::store::Store;

/// Handler of `AGI(${MEDCALL_AGI}/number-from-id,${EXTEN})`.
#[derive(Debug, Clone)]
pub struct NumberFromId {
    store: Store,
}

impl NumberFromId {
    pub fn new(store: Store) -> NumberFromId {
        NumberFromId { store }
    }
}

impl Handler for NumberFromId {
    fn call<'s>(&'s self, request: Request, session: &'s mut Session) -> HandlerFuture<'s> {
        Box::pin(async move {
            let dialled = request
                .args
                .first()
                .map(|a| a.to_str_lossy().into_owned())
                .unwrap_or_default();
            let (status, number) = match DialIdent::parse(&dialled) {
                Err(e) => {
                    tracing::info!(uniqueid = %request.uniqueid, error = %e, "number-from-id: invalid identifier");
                    ("INVALID", String::new())
                }
                Ok(ident) => match self.store.lookup_dial_ident(ident).await {
                    Ok(Some(phone)) => ("OK", phone.dial_form()),
                    Ok(None) => ("NOTFOUND", String::new()),
                    Err(e) => {
                        tracing::error!(uniqueid = %request.uniqueid, error = %e, "number-from-id: store failed");
                        ("ERROR", String::new())
                    }
                },
            };
            session.set_variable("MEDCALL_NUMBER", &number).await?;
            session.set_variable("MEDCALL_STATUS", status).await?;
            Ok(())
        })
    }
}
