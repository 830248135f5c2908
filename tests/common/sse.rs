//! A Server-Sent Events subscriber for the tests of live updates.

use std::time::Duration;

use serde_json::Value;

use super::TEST_KEY;

/// One Server-Sent Event.
#[derive(Debug, Clone)]
pub struct Ev {
    pub name: String,
    pub id: Option<String>,
    pub data: String,
}

impl Ev {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap_or_else(|e| panic!("{e}: {}", self.data))
    }
}

/// A subscriber reading a `text/event-stream` answer.
pub struct Sse {
    resp: reqwest::Response,
    buf: Vec<u8>,
    /// Comment lines (heartbeats) read so far.
    pub comments: usize,
    /// Whether the server ended the stream.
    pub ended: bool,
}

impl Sse {
    pub async fn open(c: &reqwest::Client, url: &str, last_event_id: Option<&str>) -> Sse {
        let mut req = c.get(url);
        if let Some(id) = last_event_id {
            req = req.header("last-event-id", id);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 200, "{url}");
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        Sse { resp, buf: Vec::new(), comments: 0, ended: false }
    }

    /// The next event within `within`; None when the stream ended or nothing came.
    pub async fn next(&mut self, within: Duration) -> Option<Ev> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(end) = self.buf.windows(2).position(|w| w == b"\n\n") {
                let block: Vec<u8> = self.buf.drain(..end + 2).collect();
                let text = String::from_utf8(block).unwrap();
                let (mut name, mut id, mut data) = (None, None, None);
                for line in text.lines() {
                    if line.starts_with(':') {
                        self.comments += 1;
                    } else if let Some(v) = line.strip_prefix("event: ") {
                        name = Some(v.to_string());
                    } else if let Some(v) = line.strip_prefix("id: ") {
                        id = Some(v.to_string());
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data = Some(v.to_string());
                    }
                }
                if let (Some(name), Some(data)) = (name, data) {
                    return Some(Ev { name, id, data });
                }
                continue;
            }
            if self.ended {
                return None;
            }
            match tokio::time::timeout_at(deadline, self.resp.chunk()).await {
                Err(_) => return None,
                Ok(Ok(Some(chunk))) => self.buf.extend_from_slice(&chunk),
                Ok(Ok(None)) | Ok(Err(_)) => self.ended = true,
            }
        }
    }

    /// The next event, which must be named `name`.
    pub async fn expect(&mut self, name: &str, within: Duration) -> Ev {
        let ev = self.next(within).await.unwrap_or_else(|| panic!("no `{name}` event within {within:?}"));
        assert_eq!(ev.name, name, "{ev:?}");
        ev
    }
}

/// A client for streams: no overall deadline (a stream lasts), the test key.
pub fn stream_client(h2: bool) -> reqwest::Client {
    stream_client_builder(h2).build().unwrap()
}

/// [`stream_client`]'s builder, for a test that needs one more setting.
pub fn stream_client_builder(h2: bool) -> reqwest::ClientBuilder {
    let mut h = reqwest::header::HeaderMap::new();
    h.insert(reqwest::header::AUTHORIZATION, format!("Bearer {TEST_KEY}").parse().unwrap());
    let b = reqwest::Client::builder().tls_built_in_root_certs(false).default_headers(h);
    if h2 {
        b.http2_prior_knowledge()
    } else {
        b
    }
}
