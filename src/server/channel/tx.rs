//! Transactions (`tx.select`, `tx.commit`, `tx.rollback`) and the switch into confirm mode,
//! which excludes them. A transaction defers its publishes and settlements to the commit, and
//! `commit-ok` waits until its persistent messages are on disk.

use super::publish::Deferred;
use super::{Channel, Settle};
use crate::broker::errors;
use crate::broker::publish::PublishOutcome;
use crate::protocol::methods::*;
use crate::protocol::{AmqpError, Method};

/// What a transaction defers until `tx.commit`.
pub(super) enum TxOp {
    Publish(Deferred),
    Settle(Settle),
}

impl Channel {
    pub(super) fn confirm_select(&mut self, m: ConfirmSelect) -> Result<(), AmqpError> {
        if self.tx.is_some() {
            return Err(errors::mode_switch("tx", "confirm"));
        }
        self.shared.confirms.enable();
        self.reply(m.nowait, Method::ConfirmSelectOk(ConfirmSelectOk {}));
        Ok(())
    }

    pub(super) fn tx_select(&mut self) -> Result<(), AmqpError> {
        if self.shared.confirms.is_enabled() {
            return Err(errors::mode_switch("confirm", "tx"));
        }
        self.tx.get_or_insert_with(Vec::new);
        self.shared.transactional.store(true, std::sync::atomic::Ordering::Relaxed);
        self.send(Method::TxSelectOk(TxSelectOk {}));
        Ok(())
    }

    pub(super) fn tx_rollback(&mut self) -> Result<(), AmqpError> {
        let Some(ops) = self.tx.as_mut() else {
            return Err(errors::not_transactional());
        };
        ops.clear();
        self.send(Method::TxRollbackOk(TxRollbackOk {}));
        Ok(())
    }

    pub(super) fn tx_commit(&mut self) -> Result<(), AmqpError> {
        let Some(ops) = self.tx.as_mut().map(std::mem::take) else {
            return Err(errors::not_transactional());
        };
        // commit-ok waits until the transaction's persistent messages are on disk.
        let (outbound, id) = (self.session().outbound.clone(), self.shared.id);
        let outcome = PublishOutcome::new(move |ok, _| {
            if ok {
                outbound.send_method(id, &Method::TxCommitOk(TxCommitOk {}));
            } else {
                let e = errors::tx_write_failed();
                outbound.send_method(0, &e.in_method(90, 20).to_close_method());
            }
        });
        for op in ops {
            match op {
                TxOp::Publish(p) => {
                    // Looked up again: the exchange may have gone since the publish.
                    let x = self.session().vhost.exchange(&p.method.exchange)?;
                    self.publish(&x, p, Some(&outcome));
                }
                TxOp::Settle(op) => self.apply_settle(op)?,
            }
        }
        outcome.release();
        Ok(())
    }
}
