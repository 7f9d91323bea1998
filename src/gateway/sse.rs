//! Server-sent events as a streaming gateway sends them: bytes in whatever pieces the network
//! delivers, out come the `data` payloads of complete events. Comments (`: keep-alive`),
//! `event:`/`id:`/`retry:` fields and blank keep-alives are skipped.

/// Decodes an SSE byte stream incrementally.
#[derive(Debug, Default)]
pub struct SseDecoder {
    /// Bytes after the last line break, kept until the line completes (a UTF-8 character may
    /// be split across network reads).
    partial: Vec<u8>,
    /// `data` lines of the event being read.
    data: Vec<String>,
    /// Whether the event being read had a `data` field at all.
    has_data: bool,
}

/// The longest single line accepted; a gateway sending more without a line break is broken.
const MAX_LINE: usize = 4 << 20;

#[derive(Debug, PartialEq, Eq)]
pub struct LineTooLong;

impl SseDecoder {
    /// Feeds bytes; returns the data of every event they complete.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<String>, LineTooLong> {
        let mut events = Vec::new();
        let mut rest = bytes;
        while let Some(at) = rest.iter().position(|b| *b == b'\n') {
            self.partial.extend_from_slice(&rest[..at]);
            rest = &rest[at + 1..];
            let line = std::mem::take(&mut self.partial);
            self.line(&line, &mut events);
        }
        self.partial.extend_from_slice(rest);
        if self.partial.len() > MAX_LINE {
            return Err(LineTooLong);
        }
        Ok(events)
    }

    /// The end of the stream: an event not closed by a blank line still counts.
    pub fn finish(&mut self) -> Option<String> {
        let line = std::mem::take(&mut self.partial);
        let mut events = Vec::new();
        if !line.is_empty() {
            self.line(&line, &mut events);
        }
        self.line(b"", &mut events);
        events.pop()
    }

    fn line(&mut self, line: &[u8], events: &mut Vec<String>) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            if std::mem::take(&mut self.has_data) {
                events.push(std::mem::take(&mut self.data).join("\n"));
            }
            return;
        }
        if line.starts_with(b":") {
            return;
        }
        let text = String::from_utf8_lossy(line);
        let (field, value) = match text.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (text.as_ref(), ""),
        };
        if field == "data" {
            self.has_data = true;
            self.data.push(value.to_owned());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_anywhere_across_reads_come_out_whole() {
        let stream = "data: {\"a\":1}\n\n: keep-alive\n\ndata: é\r\n\r\nevent: x\ndata: [DONE]\n\n";
        let bytes = stream.as_bytes();
        for split in 0..bytes.len() {
            let mut d = SseDecoder::default();
            let mut out = d.push(&bytes[..split]).expect("push");
            out.extend(d.push(&bytes[split..]).expect("push"));
            assert_eq!(out, ["{\"a\":1}", "é", "[DONE]"], "split at {split}");
        }
    }

    #[test]
    fn multi_line_data_is_joined_and_an_unterminated_last_event_still_counts() {
        let mut d = SseDecoder::default();
        assert_eq!(d.push(b"data: one\ndata: two\n\ndata:three").expect("push"), ["one\ntwo"]);
        assert_eq!(d.finish().as_deref(), Some("three"));
        assert_eq!(d.finish(), None);
    }

    #[test]
    fn a_line_without_end_is_refused_past_the_limit() {
        let mut d = SseDecoder::default();
        let big = vec![b'x'; MAX_LINE + 1];
        assert_eq!(d.push(&big), Err(LineTooLong));
    }
}
