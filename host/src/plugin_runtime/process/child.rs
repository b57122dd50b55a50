//! The plugin-runner role (`eventhost run-plugin`): runs one plugin in a
//! child process of the host, speaking the framing in [`super::frame`] over
//! the socket on the file descriptor the host passed.
//!
//! The plugin's code is the same as in thread mode: this process gives it a
//! `HostContext` whose service calls become messages to the host (the
//! host's side carries them out with the plugin's one context), and a
//! `HostQueue` that applies the acknowledgement rule of thread mode
//! ([`Acks`]) and moves the plugin's cursor, which the host reads from
//! memory they share ([`SharedCursor`]), before the plugin gets anything more.

use std::collections::HashMap;
use std::fs::File;
use std::os::fd::FromRawFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::RResult;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use eventhost_plugin_api::SharedEvent;
use eventhost_plugin_api::ffi::{HostContext_TO, HostQueue, HostQueue_TO, Received, RunArgs};

use super::cursor::SharedCursor;
use super::frame::{self, FRAME_EVENTS, ToChild, ToHost};
use crate::exchange::Acks;
use crate::plugin_runtime::load::open_library;
use crate::plugin_runtime::services::{EventBatch, Remote, RemoteContext};

/// The environment variable naming the socket's file descriptor.
pub const FD_VAR: &str = "EVENTHOST_PLUGIN_FD";

/// The environment variable naming the descriptor of the plugin's
/// [`SharedCursor`].
pub const CURSOR_FD_VAR: &str = "EVENTHOST_PLUGIN_CURSOR_FD";

/// Frames of events buffered in the child (up to [`FRAME_EVENTS`] events
/// each, 1,024 events at most): when full, the child stops reading the
/// socket, which in turn makes the host's forwarder wait; the host's own
/// queue then overflows into catch-up from the event log.
const BUFFERED_FRAMES: usize = 1024 / FRAME_EVENTS;

/// How long a request to the host may take before the plugin gets an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How long the plugin may go on once the host is gone before the process exits.
const ORPHAN_GRACE: Duration = Duration::from_secs(2);

/// The link to the host: writes are whole frames, from any thread.
struct Link {
    name: String,
    config_json: String,
    writer: Mutex<frame::Writer<UnixStream>>,
    answers: Mutex<HashMap<u64, Sender<Vec<u8>>>>,
    next_id: AtomicU64,
    /// The host went away without closing the queue (it crashed).
    host_gone: AtomicBool,
}

impl Link {
    fn send(&self, message: &ToHost) {
        let mut writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        // A host that is gone cannot be told; the reader notices and exits.
        let _ = writer.send(message);
    }
}

impl Remote for Link {
    fn plugin_name(&self) -> &str {
        &self.name
    }

    fn config_json(&self) -> &str {
        &self.config_json
    }

    fn call(&self, call: Vec<u8>, awaited: bool) -> Option<Vec<u8>> {
        if !awaited {
            self.send(&ToHost::Call { id: None, call });
            return None;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.answers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, tx);
        self.send(&ToHost::Call { id: Some(id), call });
        let answer = rx.recv_timeout(REQUEST_TIMEOUT).ok();
        self.answers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
        answer
    }
}

/// Runs the plugin the host names in its first message; returns the exit code.
pub fn run() -> i32 {
    let fd = |var: &str| -> Option<i32> {
        let fd = std::env::var(var).ok().and_then(|v| v.parse().ok());
        if fd.is_none() {
            eprintln!("eventhost run-plugin: {var} is not set; the host starts this role itself");
        }
        fd
    };
    let (Some(fd), Some(cursor_fd)) = (fd(FD_VAR), fd(CURSOR_FD_VAR)) else {
        return 2;
    };
    // SAFETY: the host passed these descriptors, open, for this process alone.
    let (stream, cursor_file) =
        unsafe { (UnixStream::from_raw_fd(fd), File::from_raw_fd(cursor_fd)) };
    let cursor = match SharedCursor::open(&cursor_file) {
        Ok(cursor) => cursor,
        Err(e) => {
            eprintln!("eventhost run-plugin: cannot map the cursor the host shares: {e}");
            return 1;
        }
    };
    drop(cursor_file);
    let Ok(reading) = stream.try_clone() else {
        eprintln!("eventhost run-plugin: cannot use the host's socket");
        return 1;
    };
    let mut reader = frame::Reader::new(reading);
    let writer = Mutex::new(frame::Writer::new(stream));
    let (name, library, config_json) = match reader.read::<ToChild>() {
        Ok(Some(ToChild::Init {
            name,
            library,
            config_json,
        })) => (name, library, config_json),
        other => {
            eprintln!("eventhost run-plugin: expected the host's Init message, got {other:?}");
            return 2;
        }
    };
    let module = open_library(&name, Path::new(&library)).map(|(module, _)| module);
    let link = Arc::new(Link {
        name,
        config_json,
        writer,
        answers: Mutex::new(HashMap::new()),
        next_id: AtomicU64::new(1),
        host_gone: AtomicBool::new(false),
    });
    let module = match module {
        Ok(module) => module,
        Err(e) => {
            link.send(&ToHost::Exit(Some(e.to_string())));
            return 1;
        }
    };

    let (events, queue_rx) = crossbeam_channel::bounded(BUFFERED_FRAMES);
    {
        let link = link.clone();
        std::thread::spawn(move || read_from_host(reader, events, &link));
    }
    let context = RemoteContext(link.clone());
    let queue = ChildQueue {
        frames: queue_rx,
        pending: Mutex::new(Vec::new().into_iter()),
        link: link.clone(),
        acks: Acks::default(),
        cursor,
    };
    let outcome = (module.run())(RunArgs::new(
        HostContext_TO::from_value(context, TD_Opaque),
        HostQueue_TO::from_value(queue, TD_Opaque),
    ));
    let error = match outcome {
        RResult::ROk(()) => None,
        RResult::RErr(e) => Some(e.into_string()),
    };
    link.send(&ToHost::Exit(error));
    0
}

/// Feeds the plugin's queue and routes replies, until the host closes the
/// socket; then gives the plugin a moment and ends the process, so a child
/// never outlives its host.
fn read_from_host(
    mut reader: frame::Reader<UnixStream>,
    events: Sender<Vec<SharedEvent>>,
    link: &Link,
) {
    let mut events = Some(events);
    loop {
        match reader.read::<ToChild>() {
            Ok(Some(ToChild::Events(EventBatch(batch)))) => {
                if let Some(events) = &events {
                    // Blocks while the plugin is behind: backpressure to the host.
                    let _ = events.send(batch);
                }
            }
            Ok(Some(ToChild::Close)) => events = None,
            Ok(Some(ToChild::Answer { id, answer })) => {
                let waiting = link
                    .answers
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&id);
                if let Some(waiting) = waiting {
                    let _ = waiting.send(answer);
                }
            }
            Ok(Some(ToChild::Init { .. })) | Ok(None) => break,
            Err(e) => {
                eprintln!("eventhost run-plugin: unreadable message from the host: {e}");
                break;
            }
        }
    }
    // A host that crashed will give the events it had not seen finished
    // to the plugin's next instance, which may start at once: the plugin
    // here must not handle them too, only end what it is doing.
    if events.is_some() {
        link.host_gone.store(true, Ordering::Release);
    }
    drop(events);
    std::thread::sleep(ORPHAN_GRACE);
    std::process::exit(0);
}

struct ChildQueue {
    frames: Receiver<Vec<SharedEvent>>,
    /// The rest of the last frame. Only the plugin's receiving thread
    /// locks it.
    pending: Mutex<std::vec::IntoIter<SharedEvent>>,
    link: Arc<Link>,
    acks: Acks,
    cursor: SharedCursor,
}

impl ChildQueue {
    /// Moves the cursor the host reads, when it moved: before the plugin
    /// gets anything more (the next event, or control back from `ack`), so
    /// that it never finishes an event the host does not know of.
    fn report(&self, finished: Option<u64>) {
        if let Some(seq) = finished {
            self.cursor.advance(seq);
        }
    }
}

impl HostQueue for ChildQueue {
    fn recv(&self, timeout_ms: u64) -> Received {
        if self.link.host_gone.load(Ordering::Acquire) {
            return Received::Closed;
        }
        self.report(self.acks.on_receive());
        let deadline = (timeout_ms != u64::MAX)
            .then(|| Instant::now().checked_add(Duration::from_millis(timeout_ms)))
            .flatten();
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(event) = pending.next() {
                self.acks.delivered_up_to(event.seq);
                return Received::Event(event);
            }
            let frame = match deadline {
                Some(deadline) => self.frames.recv_deadline(deadline),
                None => self
                    .frames
                    .recv()
                    .map_err(|_| RecvTimeoutError::Disconnected),
            };
            match frame {
                Ok(events) => *pending = events.into_iter(),
                Err(RecvTimeoutError::Timeout) => return Received::Timeout,
                Err(RecvTimeoutError::Disconnected) => return Received::Closed,
            }
        }
    }

    fn use_explicit_acks(&self) {
        self.acks.use_explicit();
    }

    fn ack(&self, seq: u64) {
        self.report(self.acks.ack(seq));
    }
}
