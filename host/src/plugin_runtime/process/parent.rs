//! The host's side of a plugin in a child process: starts the child, feeds
//! it the plugin's queue, and carries out the service calls it makes with
//! the plugin's [`PluginContext`], as thread mode does.
//!
//! The host's queue for the plugin uses explicit acknowledgements, made
//! from the cursor the child moves in memory they share (the child applies
//! the acknowledgement rule to what the plugin received, see
//! [`super::cursor`]), so the plugin's durable cursor moves only as far as
//! the plugin really got, and as far as it got however the child ends: a
//! crash loses nothing and repeats nothing the plugin finished.

use std::fs::File;
use std::io::ErrorKind;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use eventhost_plugin_api::ffi::HostQueue;

use super::child::{CURSOR_FD_VAR, FD_VAR};
use super::cursor::SharedCursor;
use super::frame::{self, FRAME_EVENTS, ToChild, ToHost};
use crate::exchange::{Queue, Receipt};
use crate::plugin_runtime::context::{Call, PluginContext};
use crate::plugin_runtime::runner::{RunError, Runner};

/// The descriptor the child finds its end of the socket on.
const CHILD_FD: i32 = 3;
/// The descriptor the child finds its [`SharedCursor`] on.
const CHILD_CURSOR_FD: i32 = 4;

/// How often the host reads the child's cursor when the child sends
/// nothing (and looks at the acknowledgement timeout): how far the
/// plugin's cursor in the host may lag behind the plugin.
const POLL: Duration = Duration::from_millis(50);

/// Runs a plugin in a child process.
pub struct ProcessRunner;

impl Runner for ProcessRunner {
    /// Runs the plugin in a child process until the child exits; returns
    /// what `run` returned, or how the process ended if it could not say.
    fn run(&self, context: PluginContext, queue: Queue) -> Result<(), RunError> {
        let plugin = &context.record.plugin;
        let name = plugin.entry.name.as_str();
        let ack_timeout = plugin.entry.ack_timeout;
        let (ours, theirs) = UnixStream::pair().map_err(RunError::Socket)?;
        let (cursor, cursor_file) = SharedCursor::create().map_err(RunError::Cursor)?;
        let mut child = spawn(&theirs, &cursor_file).map_err(RunError::Spawn)?;
        drop((theirs, cursor_file));
        let pid = child.id();
        tracing::info!(plugin = %name, pid, "plugin process started");

        let writer = Arc::new(Mutex::new(frame::Writer::new(
            ours.try_clone().map_err(RunError::Talk)?,
        )));
        let init = ToChild::Init {
            name: name.to_owned(),
            library: plugin.file.display().to_string(),
            config_json: plugin.entry.config.to_string(),
        };
        send(&writer, &init).map_err(RunError::Talk)?;

        let queue = Arc::new(queue);
        queue.use_explicit_acks();
        let child_gone = Arc::new(AtomicBool::new(false));
        let forwarder = {
            let (queue, writer, child_gone) = (queue.clone(), writer.clone(), child_gone.clone());
            std::thread::Builder::new()
                .name(format!("plugin {name} feed"))
                .spawn(move || forward(&queue, &writer, &child_gone))
                .map_err(RunError::Spawn)?
        };

        let _ = ours.set_read_timeout(Some(POLL));
        let mut reader = frame::Reader::new(ours);
        let mut exit: Option<Option<String>> = None;
        let mut stuck = None;
        let mut last_progress = (queue.progress().finished(), Instant::now());
        loop {
            match reader.read::<ToHost>() {
                Ok(Some(ToHost::Exit(error))) => exit = Some(error),
                Ok(Some(ToHost::Call { id, call })) => {
                    if let Err(e) = serve(&context, &writer, id, &call) {
                        tracing::error!(plugin = %name, "unreadable call from the plugin process: {e}");
                        let _ = child.kill();
                        break;
                    }
                }
                // A child that exits right after its last message may reset
                // the socket: that is its end, as a clean close is.
                Ok(None) => break,
                Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) => {
                    tracing::error!(plugin = %name, "unreadable message from the plugin process: {e}");
                    let _ = child.kill();
                    break;
                }
            }
            queue.ack(cursor.get());
            if context.record.abandoned() {
                tracing::warn!(plugin = %name, "killing the plugin process: it did not stop in time");
                let _ = child.kill();
                break;
            }
            // A plugin that holds events without finishing them is stuck.
            let progress = queue.progress();
            let finished = progress.finished();
            if finished != last_progress.0 || progress.delivered() == finished {
                last_progress = (finished, Instant::now());
            } else if last_progress.1.elapsed() >= ack_timeout {
                stuck = Some(RunError::Stuck {
                    timeout_ms: ack_timeout.as_millis(),
                    finished,
                    received: progress.delivered(),
                });
                let _ = child.kill();
                break;
            }
        }
        child_gone.store(true, Ordering::Release);
        let _ = forwarder.join();
        let status = child.wait().map_err(RunError::Talk)?;
        // What the plugin finished up to its end, however it ended.
        queue.ack(cursor.get());
        tracing::info!(plugin = %name, pid, "plugin process ended: {}", describe(status));
        match (stuck, exit) {
            (Some(stuck), _) => Err(stuck),
            (None, Some(None)) => Ok(()),
            (None, Some(Some(error))) => Err(RunError::Plugin(error)),
            (None, None) => Err(RunError::Ended(describe(status))),
        }
    }
}

/// Carries out one service call from the child, answering it if awaited.
fn serve(
    context: &PluginContext,
    writer: &Mutex<frame::Writer<UnixStream>>,
    id: Option<u64>,
    call: &[u8],
) -> Result<(), postcard::Error> {
    let call: Call = postcard::from_bytes(call)?;
    let answer = context.dispatch(call);
    if let (Some(id), Some(answer)) = (id, answer) {
        // A child that is gone cannot be answered; the reader notices.
        let _ = send(writer, &ToChild::Answer { id, answer });
    }
    Ok(())
}

fn spawn(theirs: &UnixStream, cursor: &File) -> std::io::Result<Child> {
    let fd = theirs.as_raw_fd();
    let cursor_fd = cursor.as_raw_fd();
    let mut command = Command::new(std::env::current_exe()?);
    command
        .arg("run-plugin")
        .env(FD_VAR, CHILD_FD.to_string())
        .env(CURSOR_FD_VAR, CHILD_CURSOR_FD.to_string())
        .stdin(Stdio::null());
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        command.pre_exec(move || {
            // Give the child its end and the cursor as known descriptors.
            // Copies above both targets first (closed at exec): a dup2 onto
            // one target could close the other source, and a dup2 of a
            // descriptor onto itself would leave it close-on-exec. dup2
            // clears close-on-exec on the copies the child keeps.
            let above = CHILD_CURSOR_FD + 1;
            let socket = libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, above);
            let cursor = libc::fcntl(cursor_fd, libc::F_DUPFD_CLOEXEC, above);
            if socket < 0
                || cursor < 0
                || libc::dup2(socket, CHILD_FD) < 0
                || libc::dup2(cursor, CHILD_CURSOR_FD) < 0
            {
                return Err(std::io::Error::last_os_error());
            }
            // If the host dies, even by kill -9, the child goes with it.
            #[cfg(target_os = "linux")]
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // Ctrl-C in a terminal reaches the whole process group: the
            // child must not die of it while the host drains its queue
            // (the host stops it by closing the queue). Ignored signals
            // stay ignored across exec.
            if libc::signal(libc::SIGINT, libc::SIG_IGN) == libc::SIG_ERR {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    command.spawn()
}

fn send(writer: &Mutex<frame::Writer<UnixStream>>, message: &ToChild) -> std::io::Result<()> {
    writer
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .send(message)
}

/// Feeds the plugin's queue to the child until it closes or the child is
/// gone: whatever the queue has ready, up to [`FRAME_EVENTS`], in a frame.
fn forward(queue: &Queue, writer: &Mutex<frame::Writer<UnixStream>>, child_gone: &AtomicBool) {
    let mut events = Vec::with_capacity(FRAME_EVENTS);
    while !child_gone.load(Ordering::Acquire) {
        match queue.recv_many(POLL, FRAME_EVENTS, &mut events) {
            Receipt::Events => {}
            Receipt::Timeout => continue,
            Receipt::Closed => {
                let _ = send(writer, &ToChild::Close);
                return;
            }
        }
        for message in frame::events_messages(std::mem::take(&mut events)) {
            if send(writer, &message).is_err() {
                return;
            }
        }
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
