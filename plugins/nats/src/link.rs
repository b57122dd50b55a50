//! The NATS side of the bridge: connecting to a server of the list (with
//! the configured credentials), making sure the stream is there, and one
//! connection's JetStream publishing. A link is never repaired: when the
//! connection drops, the publishing core drops the link and opens a new
//! one (with its backoff), and publishes its window again; the stream
//! drops the repeats by `Nats-Msg-Id`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_nats::jetstream::{self, context::PublishErrorKind};
use async_nats::{Client, ServerAddr};
use eventhost_plugin_api::{Context, Event};
use plugin_support::{Broker, Confirmation, ConnectError, Link, Notice};
use tokio::sync::mpsc;

use crate::config::Settings;
use crate::message::messages;

/// Publishes awaiting their acknowledgement, at most, per connection. The
/// plugin's window already bounds them (in events); this only keeps the
/// client from refusing or stalling a publish first (its own default is
/// 5,000 and the publishing core awaits acknowledgements in order, so a
/// block of many transactions in the `transaction` format could exceed it).
const MAX_ACKS_IN_FLIGHT: usize = 1 << 30;

/// How long closing the connection at shutdown may take.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// The servers, as configured.
pub struct Nats {
    settings: Arc<Settings>,
    /// Which server to try first at the next connection: each attempt
    /// starts one further, so a server that fails is not always first.
    next: AtomicUsize,
}

impl Nats {
    pub fn new(settings: Settings) -> Nats {
        Nats {
            settings: Arc::new(settings),
            next: AtomicUsize::new(0),
        }
    }

    /// Connects to `server`; events of the connection go to `notices`.
    async fn open(
        &self,
        ctx: &Context,
        server: &ServerAddr,
        notices: mpsc::UnboundedSender<async_nats::Event>,
    ) -> Result<Client, ConnectError> {
        let options = self
            .settings
            .credentials
            .options()
            .await
            .map_err(ConnectError::Retry)?;
        options
            .name(format!("eventhost plugin {}", ctx.name()))
            // This link is for this server only: when it drops, the
            // publishing core reconnects, to whichever server answers.
            .ignore_discovered_servers()
            .max_reconnects(1)
            .event_callback(move |event| {
                let notices = notices.clone();
                async move {
                    let _ = notices.send(event);
                }
            })
            .connect(server.clone())
            .await
            .map_err(|e| ConnectError::Retry(e.to_string()))
    }
}

impl Broker for Nats {
    type Link = NatsLink;

    fn describe(&self) -> String {
        let servers: Vec<&str> = self
            .settings
            .servers
            .iter()
            .map(|s| s.as_url_str())
            .collect();
        format!(
            "{} (stream `{}`, {})",
            servers.join(", "),
            self.settings.stream.name,
            self.settings.credentials.describe()
        )
    }

    async fn connect(&self, ctx: &Arc<Context>) -> Result<NatsLink, ConnectError> {
        let servers = &self.settings.servers;
        let first = self.next.fetch_add(1, Ordering::Relaxed);
        let mut failures = Vec::new();
        for i in 0..servers.len() {
            let server = &servers[(first + i) % servers.len()];
            let (to_link, notices) = mpsc::unbounded_channel();
            match self.open(ctx, server, to_link).await {
                Ok(client) => {
                    let js = jetstream::ContextBuilder::new()
                        .timeout(self.settings.ack_timeout)
                        .max_ack_inflight(MAX_ACKS_IN_FLIGHT)
                        .backpressure_on_inflight(true)
                        .build(client.clone());
                    let found = self
                        .settings
                        .stream
                        .ensure(&js, &self.settings.subjects)
                        .await
                        .map_err(|e| on_server(server, e))?;
                    ctx.info(format_args!("{found}, at {}", server.as_url_str()));
                    return Ok(NatsLink {
                        server: server.as_url_str().to_owned(),
                        client,
                        js,
                        notices,
                        settings: self.settings.clone(),
                        ctx: ctx.clone(),
                    });
                }
                Err(ConnectError::Retry(e)) => {
                    failures.push(format!("{}: {e}", server.as_url_str()));
                }
                Err(fatal) => return Err(fatal),
            }
        }
        Err(ConnectError::Retry(failures.join("; ")))
    }
}

/// Adds which server said it.
fn on_server(server: &ServerAddr, e: ConnectError) -> ConnectError {
    match e {
        ConnectError::Retry(e) => ConnectError::Retry(format!("{}: {e}", server.as_url_str())),
        fatal => fatal,
    }
}

pub struct NatsLink {
    server: String,
    client: Client,
    js: jetstream::Context,
    notices: mpsc::UnboundedReceiver<async_nats::Event>,
    settings: Arc<Settings>,
    ctx: Arc<Context>,
}

impl Link for NatsLink {
    async fn publish(&mut self, event: &Event) -> Result<Vec<Confirmation>, String> {
        let s = &self.settings;
        let mut confirms = Vec::new();
        for message in messages(event, s.format, &s.subjects) {
            let ack = self
                .js
                .publish_with_headers(message.subject, message.headers, message.payload)
                .await
                .map_err(|e| format!("cannot publish to {}: {e}", self.server))?;
            let ctx = self.ctx.clone();
            confirms.push(Box::pin(async move {
                match ack.await {
                    Ok(ack) => {
                        if ack.duplicate {
                            // The stream had it already: a repeat after a
                            // reconnect or a restart, dropped.
                            ctx.counter("nats_duplicates_total", &[], 1);
                        }
                        Ok(())
                    }
                    Err(e) if e.kind() == PublishErrorKind::StreamNotFound => {
                        Err("no stream takes the message (was the stream deleted?)".to_owned())
                    }
                    Err(e) => Err(e.to_string()),
                }
            }) as Confirmation);
        }
        Ok(confirms)
    }

    async fn notice(&mut self) -> Notice {
        while let Some(event) = self.notices.recv().await {
            let server = &self.server;
            match event {
                async_nats::Event::Disconnected => {
                    return Notice::Lost(format!("disconnected from {server}"));
                }
                async_nats::Event::Closed => {
                    return Notice::Lost(format!("the connection to {server} closed"));
                }
                async_nats::Event::LameDuckMode => {
                    return Notice::Warn(format!(
                        "{server} is shutting down (lame duck mode); the plugin reconnects when it goes"
                    ));
                }
                async_nats::Event::ServerError(e) => {
                    return Notice::Warn(format!("{server} reported an error: {e}"));
                }
                async_nats::Event::ClientError(e) => {
                    return Notice::Warn(format!("the connection to {server}: {e}"));
                }
                _ => {}
            }
        }
        // The client is gone: its events cannot come any more.
        std::future::pending().await
    }

    async fn close(self) {
        // Nothing is left to acknowledge; a server that stopped answering
        // must not hold up the host's shutdown.
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, self.client.drain()).await;
    }
}
