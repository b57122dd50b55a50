//! The query parameters a stream takes: what to send (`q`, `asset_id`,
//! `public_key`, `operation`; see `filter`) and where to start
//! (`last_seen_event`, `from_height`, `from_time`; see `position`).
//!
//! Each may be given once; an unknown one is an error, so that a typo is
//! a refusal the client reads rather than a stream that ignores it.

use crate::filter::shorten;

/// The parameters of one request, URL-decoded.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Params {
    pub q: Option<String>,
    pub asset_id: Option<String>,
    pub public_key: Option<String>,
    pub operation: Option<String>,
    pub last_seen_event: Option<String>,
    pub from_height: Option<String>,
    pub from_time: Option<String>,
}

pub const FILTERS: [&str; 3] = ["asset_id", "public_key", "operation"];
const NAMES: &str = "the filters are q, asset_id, public_key and operation; the positions last_seen_event, from_height and from_time";

impl Params {
    /// Reads a request's query string.
    pub fn parse(query: &str) -> Result<Params, String> {
        let mut params = Params::default();
        for (name, value) in form_urlencoded::parse(query.as_bytes()) {
            let slot = match name.as_ref() {
                "q" => &mut params.q,
                "asset_id" => &mut params.asset_id,
                "public_key" => &mut params.public_key,
                "operation" => &mut params.operation,
                "last_seen_event" => &mut params.last_seen_event,
                "from_height" => &mut params.from_height,
                "from_time" => &mut params.from_time,
                other => {
                    return Err(format!(
                        "unknown query parameter `{}` ({NAMES})",
                        shorten(other)
                    ));
                }
            };
            if slot.replace(value.into_owned()).is_some() {
                return Err(format!("query parameter `{name}` is given twice"));
            }
        }
        Ok(params)
    }

    /// The equality filters given, by name, in a fixed order.
    pub fn filters(&self) -> impl Iterator<Item = (&'static str, &str)> {
        FILTERS
            .into_iter()
            .zip([&self.asset_id, &self.public_key, &self.operation])
            .filter_map(|(name, value)| value.as_deref().map(|v| (name, v)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_parameter_once_and_nothing_unknown() {
        let p =
            Params::parse("operation=CREATE&q=height%20%3E%201&last_seen_event=ab%20c").unwrap();
        assert_eq!(p.q.as_deref(), Some("height > 1"));
        assert_eq!(p.last_seen_event.as_deref(), Some("ab c"));
        assert_eq!(p.filters().collect::<Vec<_>>(), [("operation", "CREATE")]);
        assert_eq!(Params::parse(""), Ok(Params::default()));
        assert_eq!(
            Params::parse("from_height=1&from_height=2").unwrap_err(),
            "query parameter `from_height` is given twice"
        );
        assert!(
            Params::parse("colour=red")
                .unwrap_err()
                .starts_with("unknown query parameter `colour` (the filters are q, asset_id")
        );
    }
}
