//! A request, from anywhere in the node, that the node stop: a plugin with
//! `on_failure = "stop-node"` that failed, for one. The node waits for it
//! beside the signals, and stops with the reason.

use std::sync::Mutex;

#[derive(Default)]
pub struct StopRequest {
    why: Mutex<Option<String>>,
    requested: tokio::sync::Notify,
}

impl StopRequest {
    /// Asks the node to stop; the first reason given is kept.
    pub fn request(&self, why: String) {
        self.why
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert(why);
        self.requested.notify_waiters();
    }

    /// Why the node was asked to stop, if it was.
    pub fn reason(&self) -> Option<String> {
        self.why.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Resolves once the node is asked to stop.
    pub async fn requested(&self) {
        loop {
            let notified = self.requested.notified();
            if self.reason().is_some() {
                return;
            }
            notified.await;
        }
    }
}
