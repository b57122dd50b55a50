//! WebSocket event streams, as BigchainDB and Planetmint serve them, fed by
//! the plugin's queue like any other plugin's.
//!
//! ```toml
//! [[plugins]]
//! name = "websocket"
//! [plugins.config]             # every key is optional; see README.md
//! bind = "127.0.0.1:9985"
//! ```
//!
//! The plugin's own thread receives the events and hands their messages to
//! the clients (see [`hub`]), never waiting for a client; a tokio
//! runtime the plugin starts for itself serves the connections. Nothing
//! async crosses the plugin boundary.

mod auth;
mod budget;
mod config;
mod connection;
mod filter;
mod handshake;
mod hub;
mod index;
mod keepalive;
mod matches;
mod messages;
mod metrics;
mod params;
mod position;
mod quota;
mod request;
mod resume;
mod ring;
mod server;
mod state_delta;
mod stream;
mod subject;
mod tls;
mod wire;

use std::sync::Arc;
use std::time::Duration;

use eventhost_plugin_api::prelude::*;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::budget::Budget;
use crate::config::Config;
use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::quota::Quotas;
use crate::stream::Stream;

/// What is left of a stopping runtime's tasks once the connections had
/// their `close_timeout_ms` is dropped after this long.
const RUNTIME_SHUTDOWN: Duration = Duration::from_millis(100);

fn run(ctx: Context, events: Events) -> Result<(), String> {
    let ctx = Arc::new(ctx);
    let config: Config = ctx.checked_config()?;
    let (tokens, named) = match auth::Tokens::load(&config.tokens, config.tokens_file.as_deref()) {
        Ok(loaded) => loaded,
        Err(reason) => {
            ctx.failed(&reason);
            return Err(reason);
        }
    };
    let quotas = Arc::new(Quotas::new(named, config.max_connections_per_address));
    let metrics = Arc::new(Metrics::new(quotas.labels()));
    let tls = match config
        .tls()
        .map(|(cert, key)| tls::acceptor(cert, key))
        .transpose()
    {
        Ok(tls) => tls,
        Err(reason) => {
            ctx.failed(&reason);
            return Err(reason);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("websocket")
        .build()
        .map_err(|e| format!("cannot start an async runtime: {e}"))?;
    // New clients are accepted and upgraded here, never queued behind the
    // connections being written to (see `server`).
    let accepting = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .thread_name("websocket-accept")
        .build()
        .map_err(|e| format!("cannot start an async runtime: {e}"))?;
    let listener = match accepting.block_on(TcpListener::bind(&config.bind)) {
        Ok(listener) => listener,
        Err(e) => {
            let reason = format!("cannot listen on {}: {e}", config.bind);
            ctx.failed(&reason);
            return Err(reason);
        }
    };
    let address = listener
        .local_addr()
        .map_err(|e| format!("cannot read the listening address: {e}"))?;
    let base = config.base_url(address.port());
    ctx.info(format_args!(
        "listening on {address}; streams at {base}/api/v1/streams/"
    ));
    for stream in Stream::ALL {
        if let Some(rel) = stream.advertised_as() {
            ctx.advertise(rel, &format!("{base}{}", stream.path()));
        }
    }

    let hub = Arc::new(Hub::new(
        config.client_queue_capacity,
        config.max_clients,
        config.max_distinct_queries,
    ));
    let budget = Budget::new(usize::try_from(config.replay_memory_bytes).unwrap_or(usize::MAX));
    let close_timeout = config.close_timeout();
    let (stop, stopped) = oneshot::channel();
    let shared = server::Shared {
        hub: hub.clone(),
        config: Arc::new(config),
        tokens,
        quotas,
        budget: budget.clone(),
        metrics: metrics.clone(),
        tls,
        ctx: ctx.clone(),
        base_url: base,
    };
    let server = accepting.spawn(server::serve(
        listener,
        Arc::new(shared),
        runtime.handle().clone(),
        stopped,
    ));
    let report = {
        let (ctx, hub, metrics) = (ctx.clone(), hub.clone(), metrics.clone());
        move || {
            let (clients, queries) = hub.census();
            metrics.report(&ctx, &clients, queries, budget.in_use());
        }
    };
    report();
    let reporting = runtime.spawn({
        let report = report.clone();
        async move {
            let mut every = tokio::time::interval(metrics::REPORT_EVERY);
            loop {
                every.tick().await;
                report();
            }
        }
    });
    ctx.ready();

    for event in &events {
        for skipped in hub.publish(&event) {
            ctx.warn(skipped);
        }
    }

    // The host is stopping: clients get what was published and a
    // close frame, within close_timeout_ms.
    hub.close();
    let _ = stop.send(());
    let _ = accepting.block_on(async { tokio::time::timeout(close_timeout, server).await });
    reporting.abort();
    runtime.shutdown_timeout(RUNTIME_SHUTDOWN);
    accepting.shutdown_timeout(RUNTIME_SHUTDOWN);
    report();
    ctx.info(format_args!(
        "stopped; {} clients were closed for being too slow",
        hub.too_slow_count()
    ));
    Ok(())
}

export_plugin! {
    name: "websocket",
    event_types: BLOCK_VALID | BLOCK_INVALID,
    run: run,
    config: Config,
}
