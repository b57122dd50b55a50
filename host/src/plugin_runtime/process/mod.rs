//! Process isolation: a plugin with `isolation = "process"` runs in a child
//! process (this same binary in its `run-plugin` role, loading the same
//! library), so a plugin that segfaults or aborts takes only itself down.
//! Host and child talk over a Unix socket in the framing of [`frame`]; the
//! host's side ([`parent`]) carries out the child's service calls with the
//! same context thread mode uses.

pub mod child;
mod cursor;
pub mod frame;
mod parent;

pub use parent::ProcessRunner;
