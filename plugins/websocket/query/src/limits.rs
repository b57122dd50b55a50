//! How big a query may be: what one client can make the server evaluate
//! for every transaction is bounded by these.

/// Bounds on a query, checked while it is parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Length of the query text in bytes (after URL decoding).
    pub max_bytes: usize,
    /// Comparisons, EXISTS tests and IN values, together.
    pub max_terms: usize,
    /// Nesting of parentheses and NOT.
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_bytes: 4096,
            max_terms: 64,
            max_depth: 8,
        }
    }
}
