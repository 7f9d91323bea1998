//! A scripted OpenAI-compatible gateway: a real HTTP server on a local port speaking the
//! chat-completions wire format (whole replies and SSE streams, text and native tool calls),
//! replaying the replies a test scripted, and able to answer 429/500, slowly, with garbage,
//! or to cut a stream. It records every request it gets.
#![allow(dead_code)] // each test binary uses a different part

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the server answers to one chat-completions request.
#[derive(Debug, Clone)]
pub struct Reply {
    kind: Kind,
    delay: Duration,
    chunk_delay: Duration,
    tokens: (u64, u64),
    retry_after: Option<String>,
    /// Answers only once this is notified.
    hold: Option<std::sync::Arc<tokio::sync::Notify>>,
}

#[derive(Debug, Clone)]
enum Kind {
    Text(String),
    /// Native tool calls: (name, arguments JSON text).
    Tools(Vec<(String, String)>),
    Status(u16, String),
    Garbage,
    /// A stream that sends this text and then closes without finishing.
    Cut(String),
    /// A stream that sends this text, then an error chunk, then `[DONE]`.
    FailMidStream(String, String),
    /// A stream that only ever sends keep-alive comments (for `seconds`).
    KeepAliveOnly(u64),
}

impl Reply {
    fn new(kind: Kind) -> Reply {
        Reply {
            kind,
            delay: Duration::ZERO,
            chunk_delay: Duration::ZERO,
            tokens: (100, 20),
            retry_after: None,
            hold: None,
        }
    }

    /// Answers only once `release` is notified (a test's way to act while a call waits).
    pub fn held(mut self, release: std::sync::Arc<tokio::sync::Notify>) -> Reply {
        self.hold = Some(release);
        self
    }

    pub fn text(text: impl Into<String>) -> Reply {
        Reply::new(Kind::Text(text.into()))
    }

    /// A reply carrying one action as JSON text, the way most models answer.
    pub fn action(action: Value) -> Reply {
        Reply::text(action.to_string())
    }

    pub fn tool_call(name: &str, arguments: Value) -> Reply {
        Reply::new(Kind::Tools(vec![(name.to_owned(), arguments.to_string())]))
    }

    pub fn tool_calls(calls: &[(&str, Value)]) -> Reply {
        Reply::new(Kind::Tools(
            calls.iter().map(|(n, a)| ((*n).to_owned(), a.to_string())).collect(),
        ))
    }

    pub fn status(code: u16) -> Reply {
        Reply::new(Kind::Status(code, format!("scripted {code}")))
    }

    pub fn status_with(code: u16, message: &str) -> Reply {
        Reply::new(Kind::Status(code, message.to_owned()))
    }

    pub fn garbage() -> Reply {
        Reply::new(Kind::Garbage)
    }

    pub fn cut_stream(text: &str) -> Reply {
        Reply::new(Kind::Cut(text.to_owned()))
    }

    /// A stream of nothing but keep-alive comments, every 50 ms for `seconds`.
    pub fn keep_alive_only(seconds: u64) -> Reply {
        Reply::new(Kind::KeepAliveOnly(seconds))
    }

    /// Streams `text`, then fails with `message` in an error chunk (whole: a 500).
    pub fn fail_mid_stream(text: &str, message: &str) -> Reply {
        Reply::new(Kind::FailMidStream(text.to_owned(), message.to_owned()))
    }

    pub fn retry_after(mut self, value: &str) -> Reply {
        self.retry_after = Some(value.to_owned());
        self
    }

    /// Waits this long before answering at all.
    pub fn delay(mut self, d: Duration) -> Reply {
        self.delay = d;
        self
    }

    /// Waits this long between streamed chunks.
    pub fn chunk_delay(mut self, d: Duration) -> Reply {
        self.chunk_delay = d;
        self
    }

    pub fn tokens(mut self, prompt: u64, completion: u64) -> Reply {
        self.tokens = (prompt, completion);
        self
    }
}

/// A request the server received.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub authorization: Option<String>,
    pub body: Value,
}

impl Received {
    /// The same without its body.
    fn clone_head(&self) -> Received {
        Received {
            method: self.method.clone(),
            path: self.path.clone(),
            authorization: self.authorization.clone(),
            body: Value::Null,
        }
    }
}

/// Makes the reply from the request's body: a model whose answers follow its input.
type Responder = Arc<dyn Fn(&Value) -> Reply + Send + Sync>;

#[derive(Default)]
struct State {
    /// Replies for requests whose body contains the key, tried in the order keys were added.
    keyed: Vec<(String, VecDeque<Reply>)>,
    queue: VecDeque<Reply>,
    /// Answers chat completions when the queues are empty, before the fallback.
    responder: Option<Responder>,
    /// Answers every request when the queues are empty.
    fallback: Option<Reply>,
    /// Answers Loom's canary (a one-token "ping"), which never uses up the script.
    canary: Option<Reply>,
    down: bool,
    key: Option<String>,
    /// Refuses every request carrying tools with a 400 saying this (a model without tools).
    refuse_tools: Option<String>,
    /// Every request, its body as it came (parsed when a test asks: keeping a parsed copy of
    /// each would make the server's own cost grow with the conversation, which the
    /// executor benchmark must not measure).
    received: Vec<(Received, Arc<str>)>,
}

#[derive(Clone)]
pub struct ScriptedGateway {
    port: u16,
    state: Arc<Mutex<State>>,
}

impl ScriptedGateway {
    pub async fn start() -> ScriptedGateway {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the scripted gateway");
        let port = listener.local_addr().expect("addr").port();
        let gw = ScriptedGateway { port, state: Arc::default() };
        let served = gw.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let gw = served.clone();
                tokio::spawn(async move { gw.serve(socket).await });
            }
        });
        gw
    }

    /// The base URL, as `LOOM_GATEWAY_URL` takes it.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn push(&self, reply: Reply) -> &Self {
        self.state().queue.push_back(reply);
        self
    }

    /// A reply for the next request whose body contains `key` (a bead id, say).
    pub fn push_for(&self, key: &str, reply: Reply) -> &Self {
        let mut s = self.state();
        match s.keyed.iter_mut().find(|(k, _)| k == key) {
            Some((_, q)) => q.push_back(reply),
            None => s.keyed.push((key.to_owned(), VecDeque::from([reply]))),
        }
        drop(s);
        self
    }

    /// The reply once the script has run out (default: a 500 saying so).
    pub fn fallback(&self, reply: Reply) {
        self.state().fallback = Some(reply);
    }

    /// Answers every chat completion the script has no reply for with `respond(body)`.
    pub fn respond_with(&self, respond: impl Fn(&Value) -> Reply + Send + Sync + 'static) {
        self.state().responder = Some(Arc::new(respond));
    }

    /// Answers Loom's canary (the one-token "ping" it sends to see whether the gateway serves
    /// a trivial request) with `reply`. Unset, the canary gets the responder's answer, else
    /// the fallback, else a one-word reply: it never takes a scripted reply from the queues.
    pub fn canary(&self, reply: Reply) {
        self.state().canary = Some(reply);
    }

    /// The canaries received.
    pub fn canaries(&self) -> usize {
        self.completions().iter().filter(|b| is_canary(b)).count()
    }

    /// While down, every request (probe included) gets a 503 and no script is used up.
    pub fn set_down(&self, down: bool) {
        self.state().down = down;
    }

    /// Refuses every request that carries tools with a 400 saying `message`, as a server or a
    /// model without tool calling does.
    pub fn refuse_tools(&self, message: &str) {
        self.state().refuse_tools = Some(message.to_owned());
    }

    /// Requires `Authorization: Bearer <key>`; others get a 401 that echoes what they sent.
    pub fn require_key(&self, key: &str) {
        self.state().key = Some(key.to_owned());
    }

    pub fn received(&self) -> Vec<Received> {
        let received = self.state().received.clone();
        received
            .into_iter()
            .map(|(head, raw)| Received {
                body: serde_json::from_str(&raw).unwrap_or(Value::Null),
                ..head
            })
            .collect()
    }

    /// The chat-completion requests received, in order.
    pub fn completions(&self) -> Vec<Value> {
        self.received()
            .into_iter()
            .filter(|r| r.path.ends_with("/chat/completions"))
            .map(|r| r.body)
            .collect()
    }

    pub fn left(&self) -> usize {
        let s = self.state();
        s.queue.len() + s.keyed.iter().map(|(_, q)| q.len()).sum::<usize>()
    }

    async fn serve(&self, mut socket: TcpStream) {
        let Some((req, raw)) = read_request(&mut socket).await else { return };
        let (reply, stream) = {
            let mut s = self.state();
            s.received.push((req.clone_head(), raw.clone()));
            (self.choose(&mut s, &req, &raw), req.body["stream"] == json!(true))
        };
        let _ = match reply {
            Answer::Json(status, body, retry_after) => {
                write_json(&mut socket, status, &body, retry_after.as_deref()).await
            }
            Answer::Script(reply) => {
                tokio::time::sleep(reply.delay).await;
                if let Some(hold) = &reply.hold {
                    hold.notified().await;
                }
                answer(&mut socket, reply, stream).await
            }
        };
        let _ = socket.shutdown().await;
    }

    fn choose(&self, s: &mut State, req: &Received, raw: &str) -> Answer {
        if s.down {
            return Answer::Json(503, error_body("scripted outage"), None);
        }
        if let Some(key) = &s.key {
            let sent = req.authorization.clone().unwrap_or_default();
            if sent != format!("Bearer {key}") {
                return Answer::Json(
                    401,
                    error_body(&format!("Incorrect API key provided: {sent}")),
                    None,
                );
            }
        }
        if req.path.ends_with("/models") {
            return Answer::Json(
                200,
                json!({"object": "list", "data": [{"id": "scripted", "object": "model"}]}),
                None,
            );
        }
        if !req.path.ends_with("/chat/completions") || req.method != "POST" {
            return Answer::Json(404, error_body("no such route"), None);
        }
        let has_tools = req.body["tools"].as_array().is_some_and(|t| !t.is_empty());
        if let Some(message) = s.refuse_tools.as_ref().filter(|_| has_tools) {
            return Answer::Json(400, error_body(message), None);
        }
        if is_canary(&req.body) {
            let derived = s.responder.as_ref().map(|respond| respond(&req.body));
            let reply = s.canary.clone().or(derived).or_else(|| s.fallback.clone());
            return Answer::Script(reply.unwrap_or_else(|| Reply::text("pong")));
        }
        let keyed = s.keyed.iter_mut().find(|(k, q)| !q.is_empty() && raw.contains(k.as_str()));
        let next = match keyed {
            Some((_, q)) => q.pop_front(),
            None => s.queue.pop_front(),
        };
        let derived = || s.responder.as_ref().map(|respond| respond(&req.body));
        match next.or_else(derived).or_else(|| s.fallback.clone()) {
            Some(reply) => Answer::Script(reply),
            None => Answer::Json(500, error_body("the script has no reply left"), None),
        }
    }
}

enum Answer {
    Json(u16, Value, Option<String>),
    Script(Reply),
}

/// Loom's canary: one user message and room for one token.
pub fn is_canary(body: &Value) -> bool {
    body["max_tokens"] == json!(1) && body["messages"].as_array().is_some_and(|m| m.len() == 1)
}

fn error_body(message: &str) -> Value {
    json!({"error": {"message": message, "type": "scripted"}})
}

/// A request, parsed, and its body as it came.
async fn read_request(socket: &mut TcpStream) -> Option<(Received, Arc<str>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let (method, path) = (first.next()?.to_owned(), first.next()?.to_owned());
    let mut length = 0;
    let mut authorization = None;
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            match name.trim().to_ascii_lowercase().as_str() {
                "content-length" => length = value.trim().parse().unwrap_or(0),
                "authorization" => authorization = Some(value.trim().to_owned()),
                _ => {}
            }
        }
    }
    while buf.len() < head_end + length {
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let raw: Arc<str> = String::from_utf8_lossy(&buf[head_end..head_end + length]).into();
    let body = serde_json::from_str(&raw).unwrap_or(Value::Null);
    Some((Received { method, path, authorization, body }, raw))
}

async fn write_json(
    socket: &mut TcpStream,
    status: u16,
    body: &Value,
    retry_after: Option<&str>,
) -> std::io::Result<()> {
    let body = body.to_string();
    let extra = retry_after.map(|v| format!("Retry-After: {v}\r\n")).unwrap_or_default();
    let head = format!(
        "HTTP/1.1 {status} Scripted\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n",
        body.len()
    );
    socket.write_all(head.as_bytes()).await?;
    socket.write_all(body.as_bytes()).await
}

async fn answer(socket: &mut TcpStream, reply: Reply, stream: bool) -> std::io::Result<()> {
    let (prompt, completion) = reply.tokens;
    let usage = json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion});
    match reply.kind {
        Kind::Status(code, message) => {
            write_json(socket, code, &error_body(&message), reply.retry_after.as_deref()).await
        }
        Kind::Garbage => {
            let body = "<html>upstream hiccup</html>";
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            socket.write_all(head.as_bytes()).await?;
            socket.write_all(body.as_bytes()).await
        }
        Kind::Text(text) if !stream => {
            let message = json!({"role": "assistant", "content": text});
            write_json(socket, 200, &whole(message, "stop", usage), None).await
        }
        Kind::Tools(calls) if !stream => {
            let calls: Vec<Value> = calls
                .iter()
                .enumerate()
                .map(|(i, (name, args))| json!({"id": format!("call_{i}"), "type": "function", "function": {"name": name, "arguments": args}}))
                .collect();
            let message = json!({"role": "assistant", "content": null, "tool_calls": calls});
            write_json(socket, 200, &whole(message, "tool_calls", usage), None).await
        }
        Kind::KeepAliveOnly(_) if !stream => {
            write_json(socket, 500, &error_body("streams only"), None).await
        }
        Kind::FailMidStream(_, message) if !stream => {
            write_json(socket, 500, &error_body(&message), None).await
        }
        Kind::Cut(text) if !stream => {
            // Half a JSON body, then the connection closes.
            let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\nConnection: close\r\n\r\n";
            socket.write_all(head.as_bytes()).await?;
            socket
                .write_all(
                    format!("{{\"choices\":[{{\"message\":{{\"content\":\"{text}").as_bytes(),
                )
                .await
        }
        kind => stream_reply(socket, kind, usage, reply.chunk_delay).await,
    }
}

fn whole(message: Value, finish: &str, usage: Value) -> Value {
    json!({
        "id": "chatcmpl-scripted", "object": "chat.completion", "model": "scripted",
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": usage,
    })
}

async fn stream_reply(
    socket: &mut TcpStream,
    kind: Kind,
    usage: Value,
    pause: Duration,
) -> std::io::Result<()> {
    let head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n";
    socket.write_all(head.as_bytes()).await?;
    let chunk = |delta: Value, finish: Value| {
        json!({"id": "chatcmpl-scripted", "object": "chat.completion.chunk", "model": "scripted",
               "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    };
    let mut events = vec![chunk(json!({"role": "assistant", "content": ""}), Value::Null)];
    if let Kind::KeepAliveOnly(seconds) = kind {
        for _ in 0..seconds * 20 {
            socket.write_all(b": keep-alive\n\n").await?;
            socket.flush().await?;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        return Ok(());
    }
    if let Kind::FailMidStream(text, message) = &kind {
        for piece in pieces(text) {
            socket
                .write_all(
                    format!("data: {}\n\n", chunk(json!({"content": piece}), Value::Null))
                        .as_bytes(),
                )
                .await?;
        }
        socket
            .write_all(format!("data: {}\n\n", json!({"error": {"message": message}})).as_bytes())
            .await?;
        return socket.write_all(b"data: [DONE]\n\n").await;
    }
    let (cut, finish) = match &kind {
        Kind::Text(text) | Kind::Cut(text) => {
            for piece in pieces(text) {
                events.push(chunk(json!({"content": piece}), Value::Null));
            }
            (matches!(kind, Kind::Cut(_)), "stop")
        }
        Kind::Tools(calls) => {
            for (i, (name, args)) in calls.iter().enumerate() {
                let (a, b) = args.split_at(args.len() / 2);
                events.push(chunk(json!({"tool_calls": [{"index": i, "id": format!("call_{i}"), "type": "function", "function": {"name": name, "arguments": a}}]}), Value::Null));
                events.push(chunk(
                    json!({"tool_calls": [{"index": i, "function": {"arguments": b}}]}),
                    Value::Null,
                ));
            }
            (false, "tool_calls")
        }
        _ => (false, "stop"),
    };
    for event in events {
        socket.write_all(format!("data: {event}\n\n").as_bytes()).await?;
        socket.flush().await?;
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
    }
    if cut {
        return Ok(());
    }
    socket.write_all(format!("data: {}\n\n", chunk(json!({}), json!(finish))).as_bytes()).await?;
    socket.write_all(b": keep-alive\n\n").await?;
    socket
        .write_all(format!("data: {}\n\n", json!({"choices": [], "usage": usage})).as_bytes())
        .await?;
    socket.write_all(b"data: [DONE]\n\n").await
}

/// Text cut into a few pieces, on character boundaries.
fn pieces(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let size = chars.len().div_ceil(4).max(1);
    chars.chunks(size).map(|c| c.iter().collect()).collect()
}
