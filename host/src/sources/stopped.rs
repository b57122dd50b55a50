//! A source that stopped for good: why, and a wait for it. The ledger (its
//! store failed beyond retrying) and an edge's upstream (its stream cannot
//! be followed) both end the node this way.

use std::sync::Mutex;

use tokio::sync::Notify;

/// Why a source stopped for good, once it did.
#[derive(Default)]
pub struct Stopped {
    why: Mutex<Option<String>>,
    notify: Notify,
}

impl Stopped {
    /// The source stopped for good, for `why`; wakes every waiter.
    pub fn set(&self, why: String) {
        *self.why.lock().unwrap_or_else(|e| e.into_inner()) = Some(why);
        self.notify.notify_waiters();
    }

    /// Why the source stopped for good, if it did.
    pub fn why(&self) -> Option<String> {
        self.why.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Resolves once the source has stopped for good.
    pub async fn wait(&self) {
        loop {
            // Registered before the check, so a `set` between the two wakes it.
            let notified = self.notify.notified();
            if self.why().is_some() {
                return;
            }
            notified.await;
        }
    }
}
