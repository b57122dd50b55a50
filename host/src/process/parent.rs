//! The host's side of a plugin in a child process: starts the child, feeds
//! it the plugin's queue, and carries out what the child asks.
//!
//! The host's queue for the plugin uses explicit acknowledgements, made
//! from the child's `Finished` messages, so the plugin's durable cursor
//! moves only as far as the plugin really got; a crash loses nothing.

use std::io::{BufReader, BufWriter, ErrorKind, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use eventhost_plugin_api::ffi::{HostQueue, LogLevel, Received};

use super::child::FD_VAR;
use super::frame::{self, Reply, ToChild, ToHost};
use crate::codec;
use crate::exchange::Queue;
use crate::plugin_manager::{Link, PluginRecord, Services, State, log_line};

/// The descriptor the child finds its end of the socket on.
const CHILD_FD: i32 = 3;

/// How often the host looks at an idle child (for the acknowledgement timeout).
const POLL: Duration = Duration::from_millis(200);

/// Runs the plugin in a child process until the child exits; returns what
/// `run` returned, or how the process ended if it could not say.
pub fn run(
    record: &Arc<PluginRecord>,
    services: &Services,
    queue: Queue,
    ack_timeout: Duration,
) -> Result<(), String> {
    let name = record.name();
    let (ours, theirs) =
        UnixStream::pair().map_err(|e| format!("cannot make the plugin's socket: {e}"))?;
    let mut child = spawn(&theirs).map_err(|e| format!("cannot start the plugin process: {e}"))?;
    drop(theirs);
    let pid = child.id();
    tracing::info!(plugin = %name, pid, "plugin process started");

    let writer = Arc::new(Mutex::new(BufWriter::new(
        ours.try_clone().map_err(|e| e.to_string())?,
    )));
    let init = ToChild::Init {
        name: name.to_owned(),
        library: record.plugin.file.display().to_string(),
        config_json: record.plugin.entry.config.to_string(),
    };
    send(&writer, &init).map_err(|e| format!("cannot talk to the plugin process: {e}"))?;

    let queue = Arc::new(queue);
    queue.use_explicit_acks();
    let child_gone = Arc::new(AtomicBool::new(false));
    let forwarder = {
        let (queue, writer, child_gone) = (queue.clone(), writer.clone(), child_gone.clone());
        std::thread::Builder::new()
            .name(format!("plugin:{name}:feed"))
            .spawn(move || forward(&queue, &writer, &child_gone))
            .map_err(|e| e.to_string())?
    };

    let _ = ours.set_read_timeout(Some(POLL));
    let mut reader = BufReader::new(ours);
    let mut exit: Option<Option<String>> = None;
    let mut stuck = None;
    let mut last_progress = (queue.progress().finished(), Instant::now());
    loop {
        match frame::read::<ToHost>(&mut reader) {
            Ok(Some(ToHost::Exit(error))) => exit = Some(error),
            Ok(Some(message)) => handle(message, record, services, &queue, &writer),
            Ok(None) => break,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => {
                tracing::error!(plugin = %name, "unreadable message from the plugin process: {e}");
                let _ = child.kill();
                break;
            }
        }
        // A plugin that holds events without finishing them is stuck.
        let progress = queue.progress();
        let finished = progress.finished();
        if finished != last_progress.0 || progress.delivered() == finished {
            last_progress = (finished, Instant::now());
        } else if last_progress.1.elapsed() >= ack_timeout {
            stuck = Some(format!(
                "stopped acknowledging: no event finished for {} ms (at event {finished}, {} received)",
                ack_timeout.as_millis(),
                progress.delivered()
            ));
            let _ = child.kill();
            break;
        }
    }
    child_gone.store(true, Ordering::Release);
    let _ = forwarder.join();
    let status = child.wait().map_err(|e| e.to_string())?;
    tracing::info!(plugin = %name, pid, "plugin process ended: {}", describe(status));
    match (stuck, exit) {
        (Some(stuck), _) => Err(stuck),
        (None, Some(None)) => Ok(()),
        (None, Some(Some(error))) => Err(error),
        (None, None) => Err(format!("the plugin process {}", describe(status))),
    }
}

fn spawn(theirs: &UnixStream) -> std::io::Result<Child> {
    let fd = theirs.as_raw_fd();
    let mut command = Command::new(std::env::current_exe()?);
    command
        .arg("run-plugin")
        .env(FD_VAR, CHILD_FD.to_string())
        .stdin(Stdio::null());
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        command.pre_exec(move || {
            // Give the child its end as a known descriptor (dup2 clears
            // close-on-exec on the copy).
            if libc::dup2(fd, CHILD_FD) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // If the host dies, even by kill -9, the child goes with it.
            #[cfg(target_os = "linux")]
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    command.spawn()
}

fn send(writer: &Mutex<BufWriter<UnixStream>>, message: &ToChild) -> std::io::Result<()> {
    let mut writer = writer.lock().unwrap_or_else(|e| e.into_inner());
    frame::write(&mut *writer, message)
}

/// Events written before a flush. Flushing is a system call: once per
/// event it was a large part of process mode's extra CPU (benchmark row
/// 6); flushing whenever the queue has nothing more ready keeps the
/// latency of a lone event as it was.
const MAX_UNFLUSHED: usize = 64;

/// Feeds the plugin's queue to the child until it closes or the child is gone.
fn forward(queue: &Queue, writer: &Mutex<BufWriter<UnixStream>>, child_gone: &AtomicBool) {
    let mut record = Vec::new();
    let mut unflushed = 0;
    while !child_gone.load(Ordering::Acquire) {
        // Wait for events only once everything written is flushed.
        let wait = if unflushed == 0 { POLL } else { Duration::ZERO };
        let sent = match queue.recv(wait.as_millis() as u64) {
            Received::Event(event) => {
                codec::encode_event(&event, &mut record);
                let message = ToChild::Event {
                    seq: event.seq,
                    record: std::mem::take(&mut record),
                };
                unflushed += 1;
                let mut writer = writer.lock().unwrap_or_else(|e| e.into_inner());
                let mut sent = frame::feed(&mut *writer, &message);
                if unflushed >= MAX_UNFLUSHED {
                    unflushed = 0;
                    sent = sent.and_then(|()| writer.flush());
                }
                sent
            }
            Received::Timeout if unflushed > 0 => {
                unflushed = 0;
                let mut writer = writer.lock().unwrap_or_else(|e| e.into_inner());
                writer.flush()
            }
            Received::Timeout => continue,
            Received::Closed => {
                let _ = send(writer, &ToChild::Close);
                return;
            }
        };
        if sent.is_err() {
            return;
        }
    }
}

fn handle(
    message: ToHost,
    record: &Arc<PluginRecord>,
    services: &Services,
    queue: &Queue,
    writer: &Mutex<BufWriter<UnixStream>>,
) {
    let plugin = record.name();
    let reply = |id, reply| {
        let _ = send(writer, &ToChild::Reply { id, reply });
    };
    match message {
        ToHost::Ready => {
            tracing::info!(plugin, "plugin ready");
            record.set_state(State::Running);
        }
        ToHost::Failed(reason) => {
            tracing::error!(plugin, "plugin reports failure: {reason}");
            record.set_last_error(&reason);
            record.set_state(State::Failed(reason));
        }
        ToHost::Log { level, message } => {
            let level = match level {
                0 => LogLevel::Error,
                1 => LogLevel::Warn,
                2 => LogLevel::Info,
                3 => LogLevel::Debug,
                _ => LogLevel::Trace,
            };
            log_line(plugin, level, &message);
        }
        ToHost::Advertise { rel, url } => {
            tracing::info!(plugin, "plugin advertises {rel} = {url}");
            services.advertised.set(
                &rel,
                Link {
                    plugin: plugin.to_owned(),
                    url,
                },
            );
        }
        ToHost::Finished(seq) => queue.ack(seq),
        ToHost::Counter {
            name,
            labels,
            delta,
        } => {
            services
                .metrics
                .plugin_counter(plugin, &name, labels, delta);
        }
        ToHost::Gauge {
            name,
            labels,
            value,
        } => {
            services.metrics.plugin_gauge(plugin, &name, labels, value);
        }
        ToHost::ReadEvents { id, from, max } => {
            let events = services
                .exchange
                .read_published(from, max as usize)
                .map(|events| {
                    events
                        .iter()
                        .map(|e| {
                            let mut buf = Vec::new();
                            codec::encode_event(e, &mut buf);
                            (e.seq, buf)
                        })
                        .collect()
                })
                .map_err(|e| e.to_string());
            reply(id, Reply::Events(events));
        }
        ToHost::Head { id } => reply(id, Reply::Head(services.exchange.head())),
        ToHost::FindEvent { id, key } => {
            let found = services.store.find_event(&key).unwrap_or_else(|e| {
                tracing::error!(plugin, "cannot look up event `{key}`: {e}");
                None
            });
            reply(id, Reply::Found(found));
        }
        ToHost::Exit(_) => {}
    }
}

/// How a process ended, in words.
fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(0), _) => "exited normally".into(),
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(signal)) => format!("was killed by signal {signal} ({})", signal_name(signal)),
        (None, None) => format!("ended ({status})"),
    }
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGABRT => "SIGABRT",
        libc::SIGKILL => "SIGKILL",
        libc::SIGBUS => "SIGBUS",
        libc::SIGILL => "SIGILL",
        libc::SIGFPE => "SIGFPE",
        libc::SIGTERM => "SIGTERM",
        _ => "signal",
    }
}
