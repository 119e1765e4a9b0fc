//! Server-sent events: an incremental parser for upstream streams (bounded), and the
//! encoding of events the gateway sends.

/// One event's data (the `data:` lines joined by newlines).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    pub event: Option<String>,
    pub data: String,
}

/// Why a stream was abandoned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    #[error("an event is larger than {0} bytes")]
    TooLarge(usize),
    #[error("the stream is not UTF-8")]
    NotUtf8,
}

/// Parses a byte stream into events; feed chunks as they arrive.
#[derive(Debug)]
pub struct SseParser {
    buf: Vec<u8>,
    data: Vec<String>,
    event: Option<String>,
    pending: usize,
    max_event: usize,
}

impl SseParser {
    pub fn new(max_event: usize) -> Self {
        SseParser {
            buf: Vec::new(),
            data: Vec::new(),
            event: None,
            pending: 0,
            max_event,
        }
    }

    /// Consumes a chunk; returns the events it completed.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<SseEvent>, SseError> {
        self.buf.extend_from_slice(chunk);
        let mut out = Vec::new();
        while let Some(end) = self.buf.iter().position(|&b| b == b'\n') {
            let mut line: Vec<u8> = self.buf.drain(..=end).collect();
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            let line = String::from_utf8(line).map_err(|_| SseError::NotUtf8)?;
            if line.is_empty() {
                if !self.data.is_empty() {
                    out.push(SseEvent {
                        event: self.event.take(),
                        data: self.data.join("\n"),
                    });
                }
                self.data.clear();
                self.event = None;
                self.pending = 0;
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = match line.split_once(':') {
                Some((f, v)) => (f.to_owned(), v.strip_prefix(' ').unwrap_or(v).to_owned()),
                None => (line.clone(), String::new()),
            };
            self.pending += value.len();
            if self.pending > self.max_event {
                return Err(SseError::TooLarge(self.max_event));
            }
            match field.as_str() {
                "data" => self.data.push(value),
                "event" => self.event = Some(value),
                _ => {}
            }
        }
        if self.buf.len() + self.pending > self.max_event {
            return Err(SseError::TooLarge(self.max_event));
        }
        Ok(out)
    }
}

/// One `message` event carrying a JSON-RPC message.
pub fn encode_message(json: &str) -> String {
    let mut out = String::with_capacity(json.len() + 24);
    out.push_str("event: message\n");
    for line in json.split('\n') {
        out.push_str("data: ");
        out.push_str(line);
        out.push('\n');
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_across_chunks_and_comments_are_skipped() {
        let mut p = SseParser::new(1024);
        assert!(
            p.push(b": keep-alive\r\n\r\nevent: mess")
                .unwrap()
                .is_empty()
        );
        assert!(p.push(b"age\ndata: {\"a\"").unwrap().is_empty());
        let events = p.push(b":1}\ndata: x\n\nid: 3\ndata:y\n\n").unwrap();
        assert_eq!(
            events,
            vec![
                SseEvent {
                    event: Some("message".into()),
                    data: "{\"a\":1}\nx".into()
                },
                SseEvent {
                    event: None,
                    data: "y".into()
                }
            ]
        );
    }

    #[test]
    fn oversized_and_garbled_streams_are_refused() {
        let mut p = SseParser::new(16);
        assert_eq!(
            p.push(b"data: 0123456789abcdefXYZ\n"),
            Err(SseError::TooLarge(16))
        );
        let mut p = SseParser::new(16);
        assert_eq!(p.push(&[b'x'; 40]), Err(SseError::TooLarge(16)));
        let mut p = SseParser::new(64);
        assert_eq!(p.push(b"data: \xff\n"), Err(SseError::NotUtf8));
        let encoded = encode_message("{\"a\":\n1}");
        let mut p = SseParser::new(64);
        assert_eq!(p.push(encoded.as_bytes()).unwrap()[0].data, "{\"a\":\n1}");
    }
}
