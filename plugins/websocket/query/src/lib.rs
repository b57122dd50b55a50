//! The filter language of eventhost's event streams, `?q=`:
//!
//! ```text
//! operation = 'TRANSFER' AND asset_id IN ('…', '…')
//! output.public_key = '…' AND output.amount >= 10
//! metadata.kind = 'invoice' OR NOT metadata.kind EXISTS
//! height >= 100
//! ```
//!
//! [`Query::parse`] checks a query against the fields of a scope
//! (transaction or block streams) and the [`Limits`], and says where it
//! goes wrong ([`Error`], with a byte position); [`Query::matches`]
//! evaluates it against a [`Transaction`] or a [`Block`]. Queries with the
//! same [`Query::normal_form`] select the same messages, so a server
//! evaluates each distinct query once per message, whoever asked for it.
//! The grammar is in [`parser`]'s documentation, the semantics of arrays
//! and types in [`eval`]'s; docs/stream-queries.md has both, with examples.
//!
//! Nothing here panics on any input (host/fuzz's `stream_query` target
//! checks it), and parsing is linear in the query's length with the
//! recursion bounded by [`Limits::max_depth`].

mod error;
pub mod eval;
mod fields;
mod lexer;
mod limits;
pub mod parser;
mod query;

pub use error::{Error, shorten};
pub use eval::{Block, Subject, Transaction};
pub use fields::Scope;
pub use limits::Limits;
pub use query::Query;
