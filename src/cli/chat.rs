//! `loom chat`: pairing with an agent in the terminal. Each line read is a message; its reply
//! streams back as it is written (text, the actions the agent takes and their results), and
//! the next line is sent only once the reply ended, so piped input works as a script.

use std::io::{BufRead, IsTerminal, Write};
use std::time::Duration;

use anyhow::{Context, bail};
use futures_util::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::Remote;
use super::agents;
use super::client::{Client, ClientError, segment};
use super::output::cell;
use super::sse::Parser;
use print::Printer;

mod print;

#[derive(Debug, Clone, clap::Args)]
pub struct ChatArgs {
    /// The project to work on.
    #[arg(long, required_unless_present = "conversation")]
    pub project: Option<String>,
    /// A bead to pair on: the agent works in the bead's worktree.
    #[arg(long)]
    pub bead: Option<String>,
    /// The agent to talk to (id or name).
    #[arg(long, conflicts_with = "persona")]
    pub agent: Option<String>,
    /// The persona to talk to, without an agent.
    #[arg(long)]
    pub persona: Option<String>,
    /// A title (default: the bead's, else "Chat with <persona>").
    #[arg(long)]
    pub title: Option<String>,
    /// Continue this conversation (its id) instead of starting one.
    #[arg(long, conflicts_with_all = ["project", "bead", "agent", "persona", "title"])]
    pub conversation: Option<String>,
}

const HELP: &str = "/quit (or Ctrl-D) leaves; Ctrl-C stops a reply, or leaves at the prompt; \
                    /handoff gives the bead back to autonomous work; start a line with // to \
                    send one that begins with /";

/// Times a broken stream is reopened, one after another, before Loom counts as gone.
const RECONNECTS: u32 = 5;

pub async fn run(remote: Remote, args: ChatArgs) -> anyhow::Result<()> {
    let client = Client::from_remote(&remote)?;
    // Installed first, so a Ctrl-C from now on is ours to handle and never kills a reply
    // half-way without stopping it.
    let interrupts = interrupts();
    let conversation = open(&client, &args).await?;
    let id = conversation["id"].as_str().context("the server sent a conversation without an id")?;
    let label = label(&client, &conversation).await;
    let mut chat = Chat {
        path: format!("/api/v1/conversations/{}", segment(id)?),
        client,
        label,
        json: remote.json,
        interactive: std::io::stdin().is_terminal(),
        interrupts,
    };
    chat.greet(&conversation);
    let mut lines = read_lines();
    loop {
        chat.prompt();
        let line = tokio::select! {
            line = lines.recv() => line,
            () = interrupted(&mut chat.interrupts) => None,
        };
        let Some(line) = line else {
            if chat.interactive {
                println!();
            }
            return Ok(());
        };
        let flow = match Input::parse(&line) {
            Input::Empty => Flow::Go,
            Input::Quit => return Ok(()),
            Input::Help => {
                eprintln!("{HELP}");
                Flow::Go
            }
            Input::Handoff => chat.handoff().await?,
            Input::Unknown(command) => {
                eprintln!("error: no command {command} (/help lists them)");
                Flow::Go
            }
            Input::Message(body) => chat.say(body).await?,
        };
        if flow == Flow::Quit {
            return Ok(());
        }
    }
}

/// Starts the conversation, or reads the one to continue (with its messages).
async fn open(client: &Client, args: &ChatArgs) -> anyhow::Result<Value> {
    if let Some(id) = &args.conversation {
        return Ok(client.get(&format!("/api/v1/conversations/{}", segment(id)?), &[]).await?);
    }
    let mut body = json!({ "project": args.project });
    if let Some(agent) = &args.agent {
        body["agent"] = Value::from(agents::resolve(client, agent).await?);
    }
    for (key, value) in [("persona", &args.persona), ("bead", &args.bead), ("title", &args.title)] {
        if let Some(value) = value {
            body[key] = Value::from(value.as_str());
        }
    }
    Ok(client.post("/api/v1/conversations", &body).await?)
}

/// Who answers: the agent's name, else the persona's.
async fn label(client: &Client, conversation: &Value) -> String {
    let persona = cell(&conversation["persona"]);
    let Some(agent) = conversation["agent"].as_str() else { return persona };
    let Ok(path) = segment(agent) else { return persona };
    match client.get::<Value>(&format!("/api/v1/agents/{path}"), &[]).await {
        Ok(found) => found["name"].as_str().map(str::to_owned).unwrap_or(persona),
        Err(_) => persona,
    }
}

/// One line of input.
#[derive(Debug, PartialEq, Eq)]
enum Input<'a> {
    Empty,
    Quit,
    Help,
    Handoff,
    Unknown(&'a str),
    Message(&'a str),
}

impl<'a> Input<'a> {
    fn parse(line: &'a str) -> Input<'a> {
        let line = line.trim_end();
        if line.trim().is_empty() {
            return Input::Empty;
        }
        if line.starts_with("//") {
            return Input::Message(&line[1..]);
        }
        let word = line.split_whitespace().next().unwrap_or_default();
        // `/quit` is a command; `/etc/hosts is gone` is a message.
        let command = word.len() > 1
            && word.starts_with('/')
            && word[1..].chars().all(|c| c.is_ascii_alphabetic());
        match word {
            "/quit" | "/exit" | "/q" => Input::Quit,
            "/help" | "/?" => Input::Help,
            "/handoff" => Input::Handoff,
            _ if command => Input::Unknown(word),
            _ => Input::Message(line),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Go,
    Quit,
}

/// How reading one connection of the stream ended.
enum Read {
    /// The reply ended (or the person left).
    Ended(Flow),
    /// The connection broke; whether it brought anything first.
    Broken { why: String, progressed: bool },
}

struct Chat {
    client: Client,
    /// `/api/v1/conversations/<id>`.
    path: String,
    label: String,
    json: bool,
    interactive: bool,
    interrupts: mpsc::Receiver<()>,
}

impl Chat {
    /// Which conversation this is, and how to leave; continuing one, its messages first.
    fn greet(&self, conversation: &Value) {
        if self.json {
            println!("{}", json!({ "event": "conversation", "id": null, "data": conversation }));
            return;
        }
        for message in conversation["messages"].as_array().into_iter().flatten() {
            print::past(&self.label, message);
        }
        let project = cell(&conversation["project"]);
        let place = match &conversation["bead"] {
            Value::String(bead) => format!("bead {bead} in project {project}"),
            _ => format!("project {project}"),
        };
        let persona = cell(&conversation["persona"]);
        let who = match self.label == persona {
            true => persona,
            false => format!("{} ({persona})", self.label),
        };
        println!(
            "Conversation {} with {who} on {place}. /quit or Ctrl-D leaves, Ctrl-C stops a \
             reply, /help says more.",
            cell(&conversation["id"]),
        );
    }

    fn prompt(&self) {
        if !self.interactive {
            return;
        }
        // Where it cannot break the JSON lines of `--json`.
        if self.json {
            eprint!("you> ");
            let _ = std::io::stderr().flush();
        } else {
            print!("you> ");
            let _ = std::io::stdout().flush();
        }
    }

    /// Posts a message and prints its reply until it ends. A refusal is printed and the
    /// chat goes on; only failing to reach Loom is an error.
    async fn say(&mut self, body: &str) -> anyhow::Result<Flow> {
        // Piped input is not on the screen: the transcript shows what was said.
        if !self.interactive && !self.json {
            println!("you> {body}");
        }
        // A Ctrl-C from before this message is not meant for its reply.
        while self.interrupts.try_recv().is_ok() {}
        let path = format!("{}/messages", self.path);
        let posted: Value = match self.client.post(&path, &json!({ "body": body })).await {
            Ok(posted) => posted,
            Err(e @ ClientError::Api { .. }) => {
                eprintln!("error: {e}");
                return Ok(Flow::Go);
            }
            Err(e) => return Err(e.into()),
        };
        let after = posted["event_id"].as_i64().context("the server sent no event_id")?;
        let mut printer = Printer::start(self.json, posted["reply"]["id"].as_i64(), &self.label);
        self.follow(after, &mut printer).await
    }

    /// Follows the stream after `after` until the reply's `done` or `error`, reopening it
    /// after the last event seen when it breaks.
    async fn follow(&mut self, after: i64, printer: &mut Printer) -> anyhow::Result<Flow> {
        let stream = format!("{}/stream", self.path);
        let (mut last, mut stopping, mut broken) = (after.to_string(), false, 0u32);
        loop {
            let why = match self.client.open_stream(&stream, &[], Some(&last)).await {
                Ok(res) => match self.read(res, printer, &mut last, &mut stopping).await? {
                    Read::Ended(flow) => return Ok(flow),
                    Read::Broken { why, progressed } => {
                        if progressed {
                            broken = 0;
                        }
                        why
                    }
                },
                Err(e @ ClientError::Unreachable { .. }) => e.to_string(),
                Err(e) => return Err(e.into()),
            };
            broken += 1;
            if broken > RECONNECTS {
                bail!("lost the reply's stream: {why}");
            }
            let wait = Duration::from_millis(250 << broken);
            eprintln!("loom chat: {why}; reconnecting in {} s", wait.as_secs_f32());
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = interrupted(&mut self.interrupts) => return Ok(Flow::Quit),
            }
        }
    }

    /// Prints one connection's events. The first Ctrl-C stops the reply (its `done` then
    /// comes on the stream), a second one leaves.
    async fn read(
        &mut self,
        res: reqwest::Response,
        printer: &mut Printer,
        last: &mut String,
        stopping: &mut bool,
    ) -> anyhow::Result<Read> {
        let (mut body, mut parser, mut progressed) = (res.bytes_stream(), Parser::new(), false);
        loop {
            let next = tokio::select! {
                chunk = body.next() => Some(chunk),
                () = interrupted(&mut self.interrupts) => None,
            };
            let why = match next {
                Some(Some(Ok(bytes))) => {
                    progressed = true;
                    for frame in parser.push(&bytes) {
                        if let Some(id) = &frame.id {
                            last.clone_from(id);
                        }
                        if printer.frame(&frame) {
                            return Ok(Read::Ended(Flow::Go));
                        }
                    }
                    continue;
                }
                Some(Some(Err(e))) => e.to_string(),
                Some(None) => "the stream ended".to_owned(),
                None if *stopping => {
                    printer.end_line();
                    return Ok(Read::Ended(Flow::Quit));
                }
                None => {
                    *stopping = true;
                    self.stop().await?;
                    continue;
                }
            };
            return Ok(Read::Broken { why, progressed });
        }
    }

    async fn stop(&self) -> anyhow::Result<()> {
        let path = format!("{}/stop", self.path);
        match self.client.send::<(), Value>(Method::POST, &path, &[], None).await {
            Ok(_) => Ok(()),
            // It ended on its own meanwhile; its end is on the stream.
            Err(ClientError::Api { code, .. }) if code == "not_replying" => Ok(()),
            Err(e @ ClientError::Api { .. }) => {
                eprintln!("error: {e}");
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn handoff(&self) -> anyhow::Result<Flow> {
        match self.client.post::<_, Value>(&format!("{}/handoff", self.path), &json!({})).await {
            Ok(answer) if self.json => {
                println!("{}", json!({ "event": "handoff", "id": null, "data": answer }));
            }
            Ok(_) => println!("Handed off: the bead goes back to autonomous work."),
            Err(e @ ClientError::Api { .. }) => eprintln!("error: {e}"),
            Err(e) => return Err(e.into()),
        }
        Ok(Flow::Go)
    }
}

/// Stdin's lines, read on a thread of their own: a blocking read cannot be cancelled, and
/// on the runtime's blocking pool it would hold up the exit until the next Enter.
fn read_lines() -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel(1);
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match stdin.read_until(b'\n', &mut buf) {
                Ok(0) => return,
                Ok(_) => {
                    let line = String::from_utf8_lossy(&buf);
                    let line = line.trim_end_matches(['\n', '\r']).to_owned();
                    if tx.blocking_send(line).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    eprintln!("loom chat: cannot read the input: {e}");
                    return;
                }
            }
        }
    });
    rx
}

/// Every Ctrl-C from now on, as a message.
fn interrupts() -> mpsc::Receiver<()> {
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(async move {
        while tokio::signal::ctrl_c().await.is_ok() {
            if tx.is_closed() {
                return;
            }
            let _ = tx.try_send(());
        }
    });
    rx
}

/// The next Ctrl-C; never, when they cannot be caught.
async fn interrupted(interrupts: &mut mpsc::Receiver<()>) {
    if interrupts.recv().await.is_none() {
        std::future::pending::<()>().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_single_words_and_paths_or_escapes_are_messages() {
        assert_eq!(Input::parse("  "), Input::Empty);
        assert_eq!(Input::parse("/quit"), Input::Quit);
        assert_eq!(Input::parse("/handoff "), Input::Handoff);
        assert_eq!(Input::parse("/frobnicate now"), Input::Unknown("/frobnicate"));
        assert_eq!(Input::parse("/etc/hosts is gone"), Input::Message("/etc/hosts is gone"));
        assert_eq!(Input::parse("//quit means"), Input::Message("/quit means"));
        assert_eq!(Input::parse("//"), Input::Message("/"));
        assert_eq!(Input::parse("fix it\r"), Input::Message("fix it"));
    }
}
