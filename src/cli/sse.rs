//! Reading server-sent events: a push parser fed with whatever bytes arrived, giving back
//! each complete frame (an event, or a comment such as a keep-alive).

/// One complete frame.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frame {
    pub id: Option<String>,
    /// `message` when the server named none.
    pub event: String,
    pub data: String,
    /// Comment lines (`: keep-alive`), without the colon.
    pub comments: Vec<String>,
}

impl Frame {
    /// A frame without data: comments (keep-alives), or only an `id:` to resume after.
    pub fn is_comment(&self) -> bool {
        self.data.is_empty()
    }
}

#[derive(Debug, Default)]
pub struct Parser {
    buffer: Vec<u8>,
    current: Frame,
    has_data: bool,
}

impl Parser {
    pub fn new() -> Parser {
        Parser::default()
    }

    /// Adds bytes; returns the frames they completed.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<Frame> {
        self.buffer.extend_from_slice(bytes);
        let mut frames = Vec::new();
        while let Some(end) = self.buffer.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.buffer.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line[..line.len() - 1]);
            let line = line.strip_suffix('\r').unwrap_or(&line);
            if line.is_empty() {
                let frame = std::mem::take(&mut self.current);
                if self.has_data || !frame.comments.is_empty() || frame.id.is_some() {
                    frames.push(Frame {
                        event: if frame.event.is_empty() { "message".into() } else { frame.event },
                        ..frame
                    });
                }
                self.has_data = false;
                continue;
            }
            self.field(line);
        }
        frames
    }

    fn field(&mut self, line: &str) {
        if let Some(comment) = line.strip_prefix(':') {
            self.current.comments.push(comment.trim_start().to_owned());
            return;
        }
        let (name, value) = match line.split_once(':') {
            Some((n, v)) => (n, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match name {
            "id" => self.current.id = Some(value.to_owned()),
            "event" => self.current.event = value.to_owned(),
            "data" => {
                if self.has_data {
                    self.current.data.push('\n');
                }
                self.current.data.push_str(value);
                self.has_data = true;
            }
            // `retry` and unknown fields: nothing to keep.
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_complete_only_at_their_blank_line_however_the_bytes_arrive() {
        let mut p = Parser::new();
        assert!(p.push(b"retry: 2000\n: connected\n\nid: 7\nevent: bead.clo").len() == 1);
        assert!(p.push(b"sed\ndata: {\"a\":").is_empty());
        let frames = p.push(b"1}\r\n\r\n: keep-alive\n\ndata: x\ndata: y\n\n");
        assert_eq!(frames.len(), 3);
        assert_eq!(frames[0].id.as_deref(), Some("7"));
        assert_eq!(frames[0].event, "bead.closed");
        assert_eq!(frames[0].data, "{\"a\":1}");
        assert!(frames[1].is_comment() && frames[1].comments == ["keep-alive"]);
        assert_eq!((frames[2].event.as_str(), frames[2].data.as_str()), ("message", "x\ny"));
    }
}
