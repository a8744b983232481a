//! Group commit, shared by both stores: a write commits without waiting for the disk, then
//! waits until a flush that covers its commit has finished. Commits are numbered in the order
//! they returned; one waiter at a time runs the store's flush, which makes every commit
//! numbered before the flush started durable, and wakes the others. One flush serves every
//! writer waiting at the time, so throughput does not fall to one transaction per disk flush,
//! and no write returns before it is durable.

use std::sync::{Condvar, Mutex};

use crate::store::StoreError;

/// The commits made and made durable, and whether a flush is running.
#[derive(Default)]
pub(crate) struct GroupCommit {
    pub(crate) state: Mutex<SyncState>,
    synced: Condvar,
}

#[derive(Default)]
pub(crate) struct SyncState {
    /// Commits numbered so far.
    pub(crate) committed: u64,
    /// Every commit up to this number is durable.
    pub(crate) durable: u64,
    syncing: bool,
}

impl GroupCommit {
    /// Numbers a commit. Call it once the commit has returned (SQLite: with the connection
    /// still locked, so that numbers follow commit order), before [`GroupCommit::wait_durable`].
    pub(crate) fn committed(&self) -> Result<u64, StoreError> {
        let mut state = self.state.lock().map_err(|_| StoreError::Poisoned)?;
        state.committed += 1;
        Ok(state.committed)
    }

    /// Returns once commit `seq` is durable, running `flush` if no other waiter is running it.
    /// `flush` must make durable every commit that returned before it started. A failed flush
    /// is returned to the waiter that ran it; the others try again.
    pub(crate) fn wait_durable(
        &self,
        seq: u64,
        flush: &dyn Fn() -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let mut state = self.state.lock().map_err(|_| StoreError::Poisoned)?;
        loop {
            if state.durable >= seq {
                return Ok(());
            }
            if !state.syncing {
                state.syncing = true;
                let target = state.committed;
                drop(state);
                let result = flush();
                state = self.state.lock().map_err(|_| StoreError::Poisoned)?;
                state.syncing = false;
                if result.is_ok() {
                    state.durable = state.durable.max(target);
                }
                self.synced.notify_all();
                result?;
            } else {
                state = self.synced.wait(state).map_err(|_| StoreError::Poisoned)?;
            }
        }
    }
}
