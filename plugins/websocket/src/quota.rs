//! Limits per client: per named token (connections at once, distinct
//! streams at once, messages per second, replay depth), and per address
//! for clients without a token.
//!
//! A client holds a [`Lease`] while it is connected; its drop gives back
//! what the client took. Refusals say which limit, for whom, and its value.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::auth::Named;
use crate::config::{NamedToken, RESERVED_NAMES};
use crate::stream::Stream;

/// Who a client is: nobody in particular (authentication off), the
/// holder of an unnamed token, or of a named one. Also the index of its
/// label in the metrics.
#[derive(Debug, Copy, Clone, PartialEq, Eq)]
pub struct Identity(usize);

impl Identity {
    pub const ANONYMOUS: Identity = Identity(0);
    pub const UNNAMED: Identity = Identity(1);

    /// The `i`th named token's.
    pub fn named(i: usize) -> Identity {
        Identity(RESERVED_NAMES.len() + i)
    }

    pub fn index(self) -> usize {
        self.0
    }

    pub fn from_index(i: usize) -> Identity {
        Identity(i)
    }
}

/// A named token's limits; `None`: unlimited.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TokenLimits {
    pub max_connections: Option<u64>,
    pub max_streams: Option<u64>,
    pub max_messages_per_second: Option<u64>,
    pub max_replay_events: Option<u64>,
}

impl TokenLimits {
    pub fn of(entry: &NamedToken) -> TokenLimits {
        TokenLimits {
            max_connections: entry.max_connections,
            max_streams: entry.max_streams,
            max_messages_per_second: entry.max_messages_per_second,
            max_replay_events: entry.max_replay_events,
        }
    }
}

/// Which limit a client ran into (a metrics label too).
#[derive(Debug, Copy, Clone, PartialEq, Eq)]
pub enum Limit {
    Connections,
    Streams,
    MessagesPerSecond,
    ReplayDepth,
    Address,
}

impl Limit {
    pub const ALL: [Limit; 5] = [
        Limit::Connections,
        Limit::Streams,
        Limit::MessagesPerSecond,
        Limit::ReplayDepth,
        Limit::Address,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Limit::Connections => "max_connections",
            Limit::Streams => "max_streams",
            Limit::MessagesPerSecond => "max_messages_per_second",
            Limit::ReplayDepth => "max_replay_events",
            Limit::Address => "max_connections_per_address",
        }
    }
}

/// A limit a client ran into, and the sentence that says so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exceeded {
    pub limit: Limit,
    pub identity: Identity,
    pub message: String,
}

pub struct Quotas {
    /// By identity: `anonymous`, `unnamed`, then the names.
    labels: Vec<String>,
    limits: Vec<TokenLimits>,
    usage: Vec<Mutex<Usage>>,
    rates: Vec<Option<Rate>>,
    per_address: Mutex<HashMap<IpAddr, usize>>,
    max_per_address: usize,
}

#[derive(Default)]
struct Usage {
    connections: u64,
    /// Clients per (stream, normal form of the query).
    streams: HashMap<(Stream, String), u64>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Quotas {
    pub fn new(named: Named, max_per_address: usize) -> Quotas {
        let mut labels: Vec<String> = RESERVED_NAMES.iter().map(|s| (*s).to_owned()).collect();
        let mut limits = vec![TokenLimits::default(); RESERVED_NAMES.len()];
        for (name, token_limits) in named {
            labels.push(name);
            limits.push(token_limits);
        }
        let rates = limits
            .iter()
            .map(|l| l.max_messages_per_second.map(Rate::new))
            .collect();
        Quotas {
            usage: labels.iter().map(|_| Mutex::default()).collect(),
            labels,
            limits,
            rates,
            per_address: Mutex::default(),
            max_per_address,
        }
    }

    /// The metrics label of each identity, by index.
    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    pub fn label(&self, identity: Identity) -> &str {
        &self.labels[identity.0]
    }

    /// Takes a connection to `stream` with a query of this normal form
    /// (`""`: none) for `identity`, from `address`.
    pub fn admit(
        self: &Arc<Self>,
        identity: Identity,
        address: IpAddr,
        stream: Stream,
        normal_form: &str,
    ) -> Result<Lease, Exceeded> {
        let limits = &self.limits[identity.0];
        let exceeded = |limit: Limit, message: String| Exceeded {
            limit,
            identity,
            message,
        };
        let name = &self.labels[identity.0];
        let anonymous = identity == Identity::ANONYMOUS;
        if anonymous {
            let mut per_address = lock(&self.per_address);
            let open = per_address.entry(address).or_default();
            if *open >= self.max_per_address {
                return Err(exceeded(
                    Limit::Address,
                    format!(
                        "limit reached: {open} streams are open from {address}, the most max_connections_per_address allows without a token"
                    ),
                ));
            }
            *open += 1;
        }
        // From here, dropping the lease gives back what it took.
        let mut lease = Lease {
            quotas: self.clone(),
            identity,
            address: anonymous.then_some(address),
            stream: None,
        };
        let mut usage = lock(&self.usage[identity.0]);
        if let Some(max) = limits.max_connections
            && usage.connections >= max
        {
            return Err(exceeded(
                Limit::Connections,
                format!(
                    "limit reached: token `{name}` has {max} connections open, its max_connections"
                ),
            ));
        }
        let key = (stream, normal_form.to_owned());
        if let Some(max) = limits.max_streams {
            let distinct = usage.streams.len() as u64;
            if !usage.streams.contains_key(&key) && distinct >= max {
                return Err(exceeded(
                    Limit::Streams,
                    format!(
                        "limit reached: token `{name}` has {max} distinct streams open, its max_streams (a stream with another query is another stream)"
                    ),
                ));
            }
        }
        usage.connections += 1;
        *usage.streams.entry(key.clone()).or_default() += 1;
        lease.stream = Some(key);
        Ok(lease)
    }
}

/// What a connected client holds of its limits.
pub struct Lease {
    quotas: Arc<Quotas>,
    identity: Identity,
    address: Option<IpAddr>,
    /// Set once the connection and the stream were counted.
    stream: Option<(Stream, String)>,
}

impl Lease {
    pub fn identity(&self) -> Identity {
        self.identity
    }

    /// The identity's label in the metrics.
    pub fn label(&self) -> &str {
        self.quotas.label(self.identity)
    }

    /// Whether a position `depth` events back may be replayed.
    pub fn check_replay(&self, depth: u64) -> Result<(), Exceeded> {
        match self.quotas.limits[self.identity.0].max_replay_events {
            Some(max) if depth > max => Err(Exceeded {
                limit: Limit::ReplayDepth,
                identity: self.identity,
                message: format!(
                    "limit reached: this position is {depth} events back, and token `{}` may replay at most {max} (max_replay_events)",
                    self.label()
                ),
            }),
            _ => Ok(()),
        }
    }

    /// The identity's message rate, if limited.
    pub fn rate(&self) -> Option<&Rate> {
        self.quotas.rates[self.identity.0].as_ref()
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(key) = self.stream.take() {
            let mut usage = lock(&self.quotas.usage[self.identity.0]);
            usage.connections -= 1;
            if let Some(count) = usage.streams.get_mut(&key) {
                *count -= 1;
                if *count == 0 {
                    usage.streams.remove(&key);
                }
            }
        }
        if let Some(address) = self.address {
            let mut per_address = lock(&self.quotas.per_address);
            if let Some(open) = per_address.get_mut(&address) {
                *open -= 1;
                if *open == 0 {
                    per_address.remove(&address);
                }
            }
        }
    }
}

/// A token bucket shared by all the clients of one token: up to a
/// second's worth of messages at once, then `per_second`.
pub struct Rate {
    per_second: u64,
    state: Mutex<(f64, Instant)>,
}

impl Rate {
    fn new(per_second: u64) -> Rate {
        Rate {
            per_second,
            state: Mutex::new((per_second as f64, Instant::now())),
        }
    }

    pub fn per_second(&self) -> u64 {
        self.per_second
    }

    /// Takes `messages` from the bucket; returns how long to wait before
    /// sending them (the bucket goes into debt, so that waiters queue up
    /// in the order they asked).
    pub fn take(&self, messages: usize) -> Duration {
        let rate = self.per_second as f64;
        let mut state = lock(&self.state);
        let (tokens, last) = &mut *state;
        let now = Instant::now();
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * rate).min(rate);
        *last = now;
        *tokens -= messages as f64;
        if *tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-*tokens / rate)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOME: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    fn quotas(limits: TokenLimits, per_address: usize) -> Arc<Quotas> {
        Arc::new(Quotas::new(vec![("explorer".into(), limits)], per_address))
    }

    #[test]
    fn connections_and_streams_are_counted_per_token_and_given_back() {
        let q = quotas(
            TokenLimits {
                max_connections: Some(4),
                max_streams: Some(2),
                ..TokenLimits::default()
            },
            100,
        );
        let who = Identity::named(0);
        let a = q.admit(who, HOME, Stream::ValidTx, "").unwrap();
        let _b = q.admit(who, HOME, Stream::ValidTx, "").unwrap();
        let c = q.admit(who, HOME, Stream::ValidBlocks, "").unwrap();
        let err = q
            .admit(who, HOME, Stream::ValidTx, "height > 1")
            .err()
            .unwrap();
        assert_eq!(err.limit, Limit::Streams);
        assert!(
            err.message
                .starts_with("limit reached: token `explorer` has 2 distinct streams open"),
            "{}",
            err.message
        );
        let _d = q.admit(who, HOME, Stream::ValidTx, "").unwrap();
        let err = q.admit(who, HOME, Stream::ValidTx, "").err().unwrap();
        assert_eq!(err.limit, Limit::Connections);
        assert_eq!(
            err.message,
            "limit reached: token `explorer` has 4 connections open, its max_connections"
        );
        drop(c);
        drop(a);
        let _e = q.admit(who, HOME, Stream::InvalidBlocks, "").unwrap();
        // Other identities are not limited by the token's limits.
        for _ in 0..10 {
            std::mem::forget(
                q.admit(Identity::UNNAMED, HOME, Stream::ValidTx, "")
                    .unwrap(),
            );
        }
    }

    #[test]
    fn clients_without_a_token_are_limited_per_address() {
        let q = quotas(TokenLimits::default(), 2);
        let other: IpAddr = "127.0.0.2".parse().unwrap();
        let a = q
            .admit(Identity::ANONYMOUS, HOME, Stream::ValidTx, "")
            .unwrap();
        let _b = q
            .admit(Identity::ANONYMOUS, HOME, Stream::ValidTx, "")
            .unwrap();
        let err = q
            .admit(Identity::ANONYMOUS, HOME, Stream::ValidTx, "")
            .err()
            .unwrap();
        assert_eq!(err.limit, Limit::Address);
        assert!(
            err.message.contains("2 streams are open from 127.0.0.1"),
            "{}",
            err.message
        );
        let _c = q
            .admit(Identity::ANONYMOUS, other, Stream::ValidTx, "")
            .unwrap();
        drop(a);
        let _d = q
            .admit(Identity::ANONYMOUS, HOME, Stream::ValidTx, "")
            .unwrap();
    }

    #[test]
    fn replay_depth_and_rate() {
        let q = quotas(
            TokenLimits {
                max_replay_events: Some(10),
                max_messages_per_second: Some(100),
                ..TokenLimits::default()
            },
            100,
        );
        let lease = q
            .admit(Identity::named(0), HOME, Stream::ValidTx, "")
            .unwrap();
        assert!(lease.check_replay(10).is_ok());
        let err = lease.check_replay(11).unwrap_err();
        assert_eq!(err.limit, Limit::ReplayDepth);
        let rate = lease.rate().unwrap();
        assert_eq!(rate.take(100), Duration::ZERO, "a second's worth at once");
        let wait = rate.take(50);
        assert!(
            wait > Duration::from_millis(400) && wait <= Duration::from_millis(500),
            "{wait:?}"
        );
        let anonymous = q
            .admit(Identity::ANONYMOUS, HOME, Stream::ValidTx, "")
            .unwrap();
        assert!(anonymous.rate().is_none() && anonymous.check_replay(u64::MAX).is_ok());
    }
}
