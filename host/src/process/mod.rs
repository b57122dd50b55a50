//! Process isolation: a plugin with `isolation = "process"` runs in a child
//! process (this same binary in its `run-plugin` role, loading the same
//! library), so a plugin that segfaults or aborts takes only itself down.
//! Host and child talk over a Unix socket in the framing of [`frame`].

pub mod child;
pub mod frame;
pub mod parent;
