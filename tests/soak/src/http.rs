//! The node's HTTP API as the soak test's clients use it: every answer is
//! returned as a status and a body, and a request that got no answer (the
//! node was killed under it, or is still starting) is an error to retry,
//! never a panic.

use std::time::Duration;

/// A client of one node's API.
#[derive(Clone)]
pub struct Api {
    agent: ureq::Agent,
    base: String,
}

/// A status and its body.
pub type Answer = (u16, String);

impl Api {
    /// A client of `http://127.0.0.1:<port>`; a request waits at most `timeout`.
    pub fn new(port: u16, timeout: Duration) -> Api {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(timeout))
            .build()
            .into();
        Api {
            agent,
            base: format!("http://127.0.0.1:{port}"),
        }
    }

    pub fn get(&self, path: &str) -> Result<Answer, ureq::Error> {
        let response = self.agent.get(format!("{}{path}", self.base)).call();
        Self::read(response)
    }

    pub fn post_json(&self, path: &str, body: &str) -> Result<Answer, ureq::Error> {
        let response = self
            .agent
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .send(body);
        Self::read(response)
    }

    fn read(
        response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<Answer, ureq::Error> {
        let mut response = response?;
        let status = response.status().as_u16();
        // Block and event bodies of a long run can be large.
        let body = response
            .body_mut()
            .with_config()
            .limit(256 << 20)
            .read_to_string()?;
        Ok((status, body))
    }
}
