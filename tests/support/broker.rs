//! The real RabbitMQ the AMQP tests run against, on loopback (tests/run.sh
//! installs and starts it when absent): declaring and reading queues with a
//! real client, and outages of the broker.
//!
//! Every helper opens a connection of its own and closes it, so a test's
//! client holds nothing across a broker outage.

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use lapin::options::{
    BasicGetOptions, ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions,
    QueueDeclareOptions, QueueDeleteOptions, QueuePurgeOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use serde_json::Value;

/// The broker the tests use; `EVENTHOST_TEST_AMQP_URL` overrides it.
pub fn url() -> String {
    std::env::var("EVENTHOST_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

/// A name no other test (or earlier run) uses, so tests can share the broker.
pub fn unique(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{prefix}-{}-{nanos}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A message read back from a queue.
#[derive(Debug, Clone)]
pub struct Received {
    pub routing_key: String,
    pub message_id: Option<String>,
    pub content_type: Option<String>,
    pub delivery_mode: Option<u8>,
    /// Header values as JSON: strings and integers as such, anything else
    /// as its debug form.
    pub headers: BTreeMap<String, Value>,
    pub body: Value,
    /// The message as it came, to publish it again.
    pub data: Vec<u8>,
    pub properties: BasicProperties,
}

/// A durable queue bound to a durable exchange, both deleted on drop.
pub struct BoundQueue {
    client: Client,
    pub exchange: String,
    pub queue: String,
}

impl BoundQueue {
    /// Declares `exchange` (durable, of `kind`) as the plugin will, and a
    /// durable queue bound to it with `binding_key`.
    pub fn new(exchange: &str, kind: ExchangeKind, binding_key: &str) -> BoundQueue {
        let client = Client::new();
        let queue = unique("q");
        client.with_channel(|channel| {
            let (exchange, queue, kind) = (exchange.to_owned(), queue.clone(), kind.clone());
            async move {
                let durable = ExchangeDeclareOptions {
                    durable: true,
                    ..Default::default()
                };
                channel
                    .exchange_declare(
                        exchange.as_str().into(),
                        kind,
                        durable,
                        FieldTable::default(),
                    )
                    .await?;
                let durable = QueueDeclareOptions {
                    durable: true,
                    ..Default::default()
                };
                channel
                    .queue_declare(queue.as_str().into(), durable, FieldTable::default())
                    .await?;
                channel
                    .queue_bind(
                        queue.as_str().into(),
                        exchange.as_str().into(),
                        binding_key.into(),
                        QueueBindOptions::default(),
                        FieldTable::default(),
                    )
                    .await
            }
        });
        BoundQueue {
            client,
            exchange: exchange.to_owned(),
            queue,
        }
    }

    /// Reads messages until one satisfies `last`, then whatever else the
    /// queue holds. Panics after `timeout` (a hang guard) with what it read.
    pub fn read_until(
        &self,
        timeout: Duration,
        mut last: impl FnMut(&Received) -> bool,
    ) -> Vec<Received> {
        let deadline = Instant::now() + timeout;
        let mut read = Vec::new();
        let mut seen_last = false;
        loop {
            let batch = self.client.with_channel(|channel| {
                let queue = self.queue.clone();
                async move { get_all(&channel, &queue).await }
            });
            let empty = batch.is_empty();
            for message in batch {
                seen_last |= last(&message);
                read.push(message);
            }
            if seen_last && empty {
                return read;
            }
            if empty {
                assert!(
                    Instant::now() < deadline,
                    "the awaited message did not arrive in queue {} within {timeout:?}; read {} messages, the last ones: {:#?}",
                    self.queue,
                    read.len(),
                    &read[read.len().saturating_sub(3)..]
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

impl BoundQueue {
    /// Watches the queue fill up to `count` messages and returns the time
    /// from its first message to its `count`-th: the rate at which the
    /// broker took them in. Panics after `timeout` (a hang guard).
    pub fn time_to_fill(&self, count: u32, timeout: Duration) -> Duration {
        self.client.with_channel(|channel| {
            let queue = self.queue.clone();
            async move {
                let deadline = Instant::now() + timeout;
                let passive = QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                };
                let mut first = None;
                loop {
                    let depth = channel
                        .queue_declare(queue.as_str().into(), passive, FieldTable::default())
                        .await?
                        .message_count();
                    let now = Instant::now();
                    if depth > 0 && first.is_none() {
                        first = Some(now);
                    }
                    if depth >= count {
                        return Ok(now - first.unwrap_or(now));
                    }
                    assert!(
                        now < deadline,
                        "queue {queue} holds {depth} of {count} messages"
                    );
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
        })
    }
}

impl BoundQueue {
    /// Drops every message the queue holds.
    pub fn purge(&self) {
        self.client.with_channel(|channel| {
            let queue = self.queue.clone();
            async move {
                channel
                    .queue_purge(queue.as_str().into(), QueuePurgeOptions::default())
                    .await
            }
        });
    }
}

impl Drop for BoundQueue {
    fn drop(&mut self) {
        let (queue, exchange) = (self.queue.clone(), self.exchange.clone());
        // Best effort: the broker may be the reason the test is failing.
        let _ = self.client.try_with_channel(|channel| async move {
            channel
                .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                .await?;
            channel
                .exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default())
                .await
        });
    }
}

/// Takes every message the queue holds now.
async fn get_all(channel: &Channel, queue: &str) -> lapin::Result<Vec<Received>> {
    let mut read = Vec::new();
    let no_ack = BasicGetOptions { no_ack: true };
    while let Some(message) = channel.basic_get(queue.into(), no_ack).await? {
        let remaining = message.message_count;
        read.push(received(message.delivery));
        if remaining == 0 {
            break;
        }
    }
    Ok(read)
}

fn received(delivery: lapin::message::Delivery) -> Received {
    let p = &delivery.properties;
    let headers = p
        .headers()
        .as_ref()
        .map(|table| {
            table
                .inner()
                .iter()
                .map(|(k, v)| (k.to_string(), header_json(v)))
                .collect()
        })
        .unwrap_or_default();
    Received {
        routing_key: delivery.routing_key.to_string(),
        message_id: p.message_id().as_ref().map(ToString::to_string),
        content_type: p.content_type().as_ref().map(ToString::to_string),
        delivery_mode: *p.delivery_mode(),
        headers,
        body: serde_json::from_slice(&delivery.data).unwrap_or_else(|e| {
            panic!(
                "message body is not JSON ({e}): {}",
                String::from_utf8_lossy(&delivery.data)
            )
        }),
        data: delivery.data.clone(),
        properties: delivery.properties.clone(),
    }
}

fn header_json(value: &AMQPValue) -> Value {
    match value {
        AMQPValue::LongString(s) => Value::String(String::from_utf8_lossy(s.as_bytes()).into()),
        AMQPValue::LongLongInt(n) => Value::from(*n),
        AMQPValue::LongInt(n) => Value::from(*n),
        other => Value::String(format!("{other:?}")),
    }
}

/// A client on its own small runtime; each call uses a fresh connection.
pub struct Client {
    runtime: tokio::runtime::Runtime,
}

impl Default for Client {
    fn default() -> Self {
        Self::new()
    }
}

impl Client {
    pub fn new() -> Client {
        Client {
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("tokio runtime"),
        }
    }

    /// Runs `work` on a channel of a new connection; panics on failure.
    pub fn with_channel<T, F>(&self, work: impl FnOnce(Channel) -> F) -> T
    where
        F: Future<Output = lapin::Result<T>>,
    {
        self.try_with_channel(work).unwrap_or_else(|e| {
            panic!("AMQP client: {e} (is RabbitMQ running on 127.0.0.1? tests/run.sh starts it)")
        })
    }

    pub fn try_with_channel<T, F>(&self, work: impl FnOnce(Channel) -> F) -> lapin::Result<T>
    where
        F: Future<Output = lapin::Result<T>>,
    {
        self.runtime.block_on(async {
            let connection = Connection::connect(&url(), ConnectionProperties::default()).await?;
            let channel = connection.create_channel().await?;
            let outcome = work(channel).await;
            let _ = connection.close(200, "done".into()).await;
            outcome
        })
    }
}

/// The broker's application stopped (`rabbitmqctl stop_app`: connections
/// drop, nothing is accepted); it starts again on [`Outage::end`], or on
/// drop, so that a failing test does not leave the broker down for others.
pub struct Outage(());

impl Outage {
    pub fn begin() -> Outage {
        rabbitmqctl(&["stop_app"]);
        Outage(())
    }

    pub fn end(self) {
        std::mem::forget(self);
        rabbitmqctl(&["start_app"]);
    }
}

impl Drop for Outage {
    fn drop(&mut self) {
        // Already unwinding: report nothing more.
        let _ = Command::new("rabbitmqctl").arg("start_app").output();
    }
}

/// Runs `rabbitmqctl <args>` and panics if it fails.
fn rabbitmqctl(args: &[&str]) {
    let output = Command::new("rabbitmqctl")
        .args(args)
        .output()
        .expect("run rabbitmqctl (is RabbitMQ installed? tests/run.sh installs it)");
    assert!(
        output.status.success(),
        "rabbitmqctl {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
