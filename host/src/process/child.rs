//! The plugin-runner role (`eventhost run-plugin`): runs one plugin in a
//! child process of the host, speaking the framing in [`super::frame`] over
//! the socket on the file descriptor the host passed.
//!
//! The plugin's code is the same as in thread mode: this process gives it a
//! `HostContext` and a `HostQueue` whose calls become messages to the host.

use std::collections::HashMap;
use std::io::{BufReader, BufWriter};
use std::os::fd::FromRawFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::{RArc, ROption, RResult, RSlice, RStr, RString, RVec, Tuple2};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use eventhost_plugin_api::ffi::{
    HostContext, HostContext_TO, HostQueue, HostQueue_TO, LogLevel, Received, RunArgs,
};
use eventhost_plugin_api::{Event, SharedEvent};

use super::frame::{self, Reply, ToChild, ToHost};
use crate::codec;
use crate::plugin_manager::{labels, open_library};

/// The environment variable naming the socket's file descriptor.
pub const FD_VAR: &str = "EVENTHOST_PLUGIN_FD";

/// Events buffered in the child: when full, the child stops reading the
/// socket, which in turn makes the host's forwarder wait; the host's own
/// queue then overflows into catch-up from the event log.
const BUFFER: usize = 1024;

/// How long a request to the host may take before the plugin gets an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How long the plugin may go on once the host is gone before the process exits.
const ORPHAN_GRACE: Duration = Duration::from_secs(2);

/// The link to the host: writes are whole frames, from any thread.
struct Link {
    writer: Mutex<BufWriter<UnixStream>>,
    replies: Mutex<HashMap<u64, Sender<Reply>>>,
    next_id: AtomicU64,
    /// The host went away without closing the queue (it crashed).
    host_gone: AtomicBool,
}

impl Link {
    fn send(&self, message: &ToHost) {
        let mut writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        // A host that is gone cannot be told; the reader notices and exits.
        let _ = frame::write(&mut *writer, message);
    }

    fn request(&self, make: impl FnOnce(u64) -> ToHost) -> Option<Reply> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.replies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, tx);
        self.send(&make(id));
        let reply = rx.recv_timeout(REQUEST_TIMEOUT).ok();
        self.replies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
        reply
    }
}

/// Runs the plugin the host names in its first message; returns the exit code.
pub fn run() -> i32 {
    let fd: i32 = match std::env::var(FD_VAR).ok().and_then(|v| v.parse().ok()) {
        Some(fd) => fd,
        None => {
            eprintln!(
                "eventhost run-plugin: {FD_VAR} is not set; the host starts this role itself"
            );
            return 2;
        }
    };
    // SAFETY: the host passed this descriptor, open, for this process alone.
    let stream = unsafe { UnixStream::from_raw_fd(fd) };
    let Ok(reading) = stream.try_clone() else {
        eprintln!("eventhost run-plugin: cannot use the host's socket");
        return 1;
    };
    let mut reader = BufReader::new(reading);
    let link = Arc::new(Link {
        writer: Mutex::new(BufWriter::new(stream)),
        replies: Mutex::new(HashMap::new()),
        next_id: AtomicU64::new(1),
        host_gone: AtomicBool::new(false),
    });
    let (name, library, config_json) = match frame::read::<ToChild>(&mut reader) {
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
    let module = match open_library(&name, Path::new(&library)) {
        Ok((module, _)) => module,
        Err(e) => {
            link.send(&ToHost::Exit(Some(e.to_string())));
            return 1;
        }
    };

    let (events, queue_rx) = crossbeam_channel::bounded::<SharedEvent>(BUFFER);
    {
        let link = link.clone();
        std::thread::spawn(move || read_from_host(reader, events, &link));
    }
    let context = ChildContext {
        name,
        config_json,
        link: link.clone(),
    };
    let queue = ChildQueue {
        rx: queue_rx,
        link: link.clone(),
        delivered: AtomicU64::new(0),
        finished: AtomicU64::new(0),
        explicit_acks: AtomicBool::new(false),
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
fn read_from_host(mut reader: BufReader<UnixStream>, events: Sender<SharedEvent>, link: &Link) {
    let mut events = Some(events);
    loop {
        match frame::read::<ToChild>(&mut reader) {
            Ok(Some(ToChild::Event { seq, record })) => {
                let Ok(event) = codec::decode_event(seq, &record) else {
                    eprintln!("eventhost run-plugin: unreadable event {seq} from the host");
                    break;
                };
                if let Some(events) = &events {
                    // Blocks while the plugin is behind: backpressure to the host.
                    let _ = events.send(RArc::new(event));
                }
            }
            Ok(Some(ToChild::Close)) => events = None,
            Ok(Some(ToChild::Reply { id, reply })) => {
                let waiting = link
                    .replies
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&id);
                if let Some(waiting) = waiting {
                    let _ = waiting.send(reply);
                }
            }
            Ok(Some(ToChild::Init { .. })) | Ok(None) | Err(_) => break,
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
    rx: Receiver<SharedEvent>,
    link: Arc<Link>,
    delivered: AtomicU64,
    finished: AtomicU64,
    explicit_acks: AtomicBool,
}

impl ChildQueue {
    fn finish(&self, seq: u64) {
        if self.finished.fetch_max(seq, Ordering::AcqRel) < seq {
            self.link.send(&ToHost::Finished(seq));
        }
    }
}

impl HostQueue for ChildQueue {
    fn recv(&self, timeout_ms: u64) -> Received {
        if self.link.host_gone.load(Ordering::Acquire) {
            return Received::Closed;
        }
        if !self.explicit_acks.load(Ordering::Acquire) {
            self.finish(self.delivered.load(Ordering::Acquire));
        }
        let received = if timeout_ms == u64::MAX {
            self.rx.recv().map_err(|_| RecvTimeoutError::Disconnected)
        } else {
            let deadline = Instant::now().checked_add(Duration::from_millis(timeout_ms));
            match deadline {
                Some(deadline) => self.rx.recv_deadline(deadline),
                None => self.rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
            }
        };
        match received {
            Ok(event) => {
                self.delivered.store(event.seq, Ordering::Release);
                Received::Event(event)
            }
            Err(RecvTimeoutError::Timeout) => Received::Timeout,
            Err(RecvTimeoutError::Disconnected) => Received::Closed,
        }
    }

    fn use_explicit_acks(&self) {
        self.explicit_acks.store(true, Ordering::Release);
    }

    fn ack(&self, seq: u64) {
        self.finish(seq.min(self.delivered.load(Ordering::Acquire)));
    }
}

struct ChildContext {
    name: String,
    config_json: String,
    link: Arc<Link>,
}

impl HostContext for ChildContext {
    fn plugin_name(&self) -> RStr<'_> {
        RStr::from_str(&self.name)
    }

    fn config_json(&self) -> RStr<'_> {
        RStr::from_str(&self.config_json)
    }

    fn log(&self, level: LogLevel, message: RStr<'_>) {
        self.link.send(&ToHost::Log {
            level: level as u8,
            message: message.to_string(),
        });
    }

    fn ready(&self) {
        self.link.send(&ToHost::Ready);
    }

    fn failed(&self, reason: RStr<'_>) {
        self.link.send(&ToHost::Failed(reason.to_string()));
    }

    fn advertise(&self, rel: RStr<'_>, url: RStr<'_>) {
        self.link.send(&ToHost::Advertise {
            rel: rel.to_string(),
            url: url.to_string(),
        });
    }

    fn read_events(&self, from: u64, max: u32) -> RResult<RVec<RArc<Event>>, RString> {
        match self.link.request(|id| ToHost::ReadEvents { id, from, max }) {
            Some(Reply::Events(Ok(records))) => {
                let mut events = RVec::with_capacity(records.len());
                for (seq, record) in records {
                    match codec::decode_event(seq, &record) {
                        Ok(event) => events.push(RArc::new(event)),
                        Err(e) => return RResult::RErr(e.into()),
                    }
                }
                RResult::ROk(events)
            }
            Some(Reply::Events(Err(e))) => RResult::RErr(e.into()),
            _ => RResult::RErr("the host did not answer".into()),
        }
    }

    fn head(&self) -> u64 {
        match self.link.request(|id| ToHost::Head { id }) {
            Some(Reply::Head(head)) => head,
            _ => 0,
        }
    }

    fn find_event(&self, key: RStr<'_>) -> ROption<u64> {
        let key = key.to_string();
        match self.link.request(|id| ToHost::FindEvent { id, key }) {
            Some(Reply::Found(found)) => found.into(),
            _ => ROption::RNone,
        }
    }

    fn counter_add(
        &self,
        name: RStr<'_>,
        pairs: RSlice<'_, Tuple2<RStr<'_>, RStr<'_>>>,
        delta: u64,
    ) {
        self.link.send(&ToHost::Counter {
            name: name.to_string(),
            labels: labels(pairs),
            delta,
        });
    }

    fn gauge_set(&self, name: RStr<'_>, pairs: RSlice<'_, Tuple2<RStr<'_>, RStr<'_>>>, value: i64) {
        self.link.send(&ToHost::Gauge {
            name: name.to_string(),
            labels: labels(pairs),
            value,
        });
    }
}
