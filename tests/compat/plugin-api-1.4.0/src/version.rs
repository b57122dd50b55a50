//! Which plugins a host accepts.

use std::fmt;

/// A plugin-api version. The major version changes when a type that crosses
/// the boundary changes; the minor version when the host gains services.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ApiVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

/// The version of this crate, which every plugin built against it declares.
pub const API_VERSION: ApiVersion = ApiVersion {
    major: parse_u32(env!("CARGO_PKG_VERSION_MAJOR")),
    minor: parse_u32(env!("CARGO_PKG_VERSION_MINOR")),
    patch: parse_u32(env!("CARGO_PKG_VERSION_PATCH")),
};

const fn parse_u32(digits: &str) -> u32 {
    let bytes = digits.as_bytes();
    let mut value = 0;
    let mut i = 0;
    while i < bytes.len() {
        value = value * 10 + (bytes[i] - b'0') as u32;
        i += 1;
    }
    value
}

impl ApiVersion {
    /// Parses `MAJOR.MINOR.PATCH` (pre-release and build suffixes ignored).
    pub fn parse(s: &str) -> Option<ApiVersion> {
        let core = s.split(['-', '+']).next()?;
        let mut parts = core.split('.').map(|p| p.parse::<u32>().ok());
        let version = ApiVersion {
            major: parts.next()??,
            minor: parts.next()??,
            patch: parts.next()??,
        };
        parts.next().is_none().then_some(version)
    }

    /// The compatibility rule: a host accepts a plugin built against the same
    /// major version and a minor version no newer than its own. Older minors
    /// work because host services are only ever appended; a newer minor may
    /// call a service this host does not have.
    pub fn accepts(self, plugin: ApiVersion) -> bool {
        plugin.major == self.major && plugin.minor <= self.minor
    }

    /// The versions a host of this version accepts, for error messages.
    pub fn accepted_range(self) -> String {
        format!("{}.0 through {}.{}", self.major, self.major, self.minor)
    }
}

impl fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> ApiVersion {
        ApiVersion::parse(s).unwrap()
    }

    #[test]
    fn matches_the_crate_version() {
        assert_eq!(API_VERSION, v(env!("CARGO_PKG_VERSION")));
    }

    #[test]
    fn accepts_same_major_and_older_or_equal_minor() {
        let host = v("1.2.0");
        assert!(host.accepts(v("1.0.0")));
        assert!(host.accepts(v("1.2.7")));
        assert!(!host.accepts(v("1.3.0")));
        assert!(!host.accepts(v("2.0.0")));
        assert!(!host.accepts(v("0.2.0")));
    }

    #[test]
    fn parses_only_full_versions() {
        assert_eq!(v("1.2.3-rc.1"), v("1.2.3"));
        assert!(ApiVersion::parse("1.2").is_none());
        assert!(ApiVersion::parse("1.2.3.4").is_none());
        assert!(ApiVersion::parse("one.2.3").is_none());
    }
}
