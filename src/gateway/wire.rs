//! The OpenAI chat-completions wire format, as much of it as Loom sends and reads: requests,
//! whole responses, and the chunks of a streamed one.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One message of a conversation with the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub role: Role,
    /// Absent on an assistant message that only calls tools.
    #[serde(default)]
    pub content: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// On a `tool` message: the call it answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
}

impl Message {
    pub fn system(text: impl Into<String>) -> Message {
        Message::text(Role::System, text)
    }

    pub fn user(text: impl Into<String>) -> Message {
        Message::text(Role::User, text)
    }

    pub fn assistant(text: impl Into<String>) -> Message {
        Message::text(Role::Assistant, text)
    }

    /// The answer to one native tool call.
    pub fn tool(call_id: impl Into<String>, text: impl Into<String>) -> Message {
        Message { tool_call_id: Some(call_id.into()), ..Message::text(Role::Tool, text) }
    }

    fn text(role: Role, text: impl Into<String>) -> Message {
        Message { role, content: Some(text.into()), tool_calls: Vec::new(), tool_call_id: None }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
    Tool,
}

/// A native tool call: a function name and its arguments as a JSON text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCall {
    pub id: String,
    #[serde(rename = "type", default = "function_type")]
    pub kind: String,
    pub function: FunctionCall,
}

fn function_type() -> String {
    "function".into()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionCall {
    pub name: String,
    /// JSON text, as the model wrote it (it may not parse).
    #[serde(default)]
    pub arguments: String,
}

/// A tool offered to the model: `{"type": "function", "function": {...}}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Tool {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub function: FunctionSpec,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FunctionSpec {
    pub name: String,
    pub description: String,
    /// A JSON schema of the arguments object.
    pub parameters: Value,
}

impl Tool {
    pub fn function(name: &str, description: &str, parameters: Value) -> Tool {
        Tool {
            kind: "function",
            function: FunctionSpec {
                name: name.into(),
                description: description.into(),
                parameters,
            },
        }
    }
}

/// The body of `POST <base>/chat/completions`.
#[derive(Debug, Serialize)]
pub(crate) struct Request<'a> {
    pub model: &'a str,
    pub messages: &'a [Message],
    #[serde(skip_serializing_if = "<[Tool]>::is_empty")]
    pub tools: &'a [Tool],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    pub stream: bool,
    /// Asks a streaming server for a last chunk with the token counts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
}

#[derive(Debug, Serialize)]
pub(crate) struct StreamOptions {
    pub include_usage: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    #[serde(default)]
    pub prompt_tokens: u64,
    #[serde(default)]
    pub completion_tokens: u64,
}

/// A whole (non-streamed) response.
#[derive(Debug, Deserialize)]
pub(crate) struct Response {
    #[serde(default)]
    pub model: Option<String>,
    pub choices: Vec<Choice>,
    #[serde(default)]
    pub usage: Option<Usage>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Choice {
    pub message: ResponseMessage,
    #[serde(default)]
    pub finish_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ResponseMessage {
    #[serde(default)]
    pub content: Option<String>,
    #[serde(default)]
    pub tool_calls: Option<Vec<ToolCall>>,
}

/// One `data:` chunk of a streamed response.
#[derive(Debug, Deserialize)]
pub(crate) struct Chunk {
    /// A gateway failing mid-stream sends `{"error": {...}}` (or a string) instead.
    #[serde(default)]
    pub error: Option<StreamError>,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub choices: Vec<ChunkChoice>,
    #[serde(default)]
    pub usage: Option<Usage>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum StreamError {
    Text(String),
    Object {
        #[serde(default)]
        message: Option<String>,
    },
}

impl StreamError {
    pub fn message(&self) -> String {
        match self {
            StreamError::Text(t) => t.clone(),
            StreamError::Object { message } => {
                message.clone().unwrap_or_else(|| "an error without a message".into())
            }
        }
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct ChunkChoice {
    #[serde(default)]
    pub delta: Delta,
    #[serde(default)]
    pub finish_reason: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct Delta {
    #[serde(default)]
    pub content: Option<String>,
    #[serde(default)]
    pub tool_calls: Option<Vec<ToolCallDelta>>,
}

/// A piece of a tool call: the first piece of each carries its id and name, the rest append
/// to its arguments.
#[derive(Debug, Deserialize)]
pub(crate) struct ToolCallDelta {
    #[serde(default)]
    pub index: usize,
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub function: Option<FunctionDelta>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct FunctionDelta {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub arguments: Option<String>,
}

/// The most tool calls kept from one streamed reply.
const MAX_TOOL_CALLS: usize = 64;

/// What the model answered, streamed or not.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Completion {
    pub content: String,
    pub tool_calls: Vec<ToolCall>,
    pub usage: Usage,
    pub finish_reason: Option<String>,
    /// The model the gateway says answered (it may differ from the one asked for).
    pub model: Option<String>,
}

impl Completion {
    pub(crate) fn from_response(res: Response) -> Option<Completion> {
        let choice = res.choices.into_iter().next()?;
        Some(Completion {
            content: choice.message.content.unwrap_or_default(),
            tool_calls: choice.message.tool_calls.unwrap_or_default(),
            usage: res.usage.unwrap_or_default(),
            finish_reason: choice.finish_reason,
            model: res.model,
        })
    }

    /// Folds one streamed chunk in; returns the text it added, if any.
    pub(crate) fn absorb(&mut self, chunk: Chunk) -> Option<String> {
        if chunk.model.is_some() {
            self.model = chunk.model;
        }
        if let Some(usage) = chunk.usage {
            self.usage = usage;
        }
        let mut added = None;
        for choice in chunk.choices {
            if choice.finish_reason.is_some() {
                self.finish_reason = choice.finish_reason;
            }
            if let Some(text) = choice.delta.content.filter(|t| !t.is_empty()) {
                self.content.push_str(&text);
                added = Some(text);
            }
            for piece in choice.delta.tool_calls.into_iter().flatten() {
                self.absorb_call(piece);
            }
        }
        added
    }

    fn absorb_call(&mut self, piece: ToolCallDelta) {
        // A reply never holds more calls than this; a wild index is not a reason to allocate.
        if piece.index >= MAX_TOOL_CALLS {
            return;
        }
        while self.tool_calls.len() <= piece.index {
            self.tool_calls.push(ToolCall {
                id: String::new(),
                kind: function_type(),
                function: FunctionCall { name: String::new(), arguments: String::new() },
            });
        }
        let call = &mut self.tool_calls[piece.index];
        if let Some(id) = piece.id {
            call.id = id;
        }
        if let Some(f) = piece.function {
            if let Some(name) = f.name {
                call.function.name.push_str(&name);
            }
            if let Some(args) = f.arguments {
                call.function.arguments.push_str(&args);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(json: &str) -> Chunk {
        serde_json::from_str(json).expect("chunk")
    }

    #[test]
    fn streamed_chunks_add_up_to_the_whole_reply_with_tool_calls_and_usage() {
        let mut c = Completion::default();
        let parts = [
            r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}"#,
            r#"{"model":"m1","choices":[{"index":0,"delta":{"content":"Hel"}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"content":"lo"}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"c1","type":"function","function":{"name":"read_file","arguments":"{\"pa"}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"th\":\"a\"}"}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}"#,
            r#"{"choices":[],"usage":{"prompt_tokens":12,"completion_tokens":5,"total_tokens":17}}"#,
        ];
        let added: Vec<_> = parts.iter().filter_map(|p| c.absorb(chunk(p))).collect();
        assert_eq!(added, ["Hel", "lo"]);
        assert_eq!(c.content, "Hello");
        assert_eq!(c.tool_calls.len(), 1);
        assert_eq!(c.tool_calls[0].id, "c1");
        assert_eq!(c.tool_calls[0].function.name, "read_file");
        assert_eq!(c.tool_calls[0].function.arguments, r#"{"path":"a"}"#);
        assert_eq!(c.finish_reason.as_deref(), Some("tool_calls"));
        assert_eq!(c.usage, Usage { prompt_tokens: 12, completion_tokens: 5 });
        assert_eq!(c.model.as_deref(), Some("m1"));
    }

    #[test]
    fn a_tool_call_index_past_any_real_reply_is_ignored_not_allocated() {
        let mut c = Completion::default();
        let wild = r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":1000000000,"id":"x","function":{"name":"run","arguments":"{}"}}]}}]}"#;
        c.absorb(chunk(wild));
        assert!(c.tool_calls.is_empty());
    }

    #[test]
    fn a_response_without_choices_is_no_completion() {
        let res: Response = serde_json::from_str(r#"{"choices":[]}"#).expect("response");
        assert!(Completion::from_response(res).is_none());
    }

    #[test]
    fn an_assistant_message_that_only_calls_tools_serialises_a_null_content() {
        let m = Message {
            role: Role::Assistant,
            content: None,
            tool_calls: vec![ToolCall {
                id: "c1".into(),
                kind: "function".into(),
                function: FunctionCall { name: "done".into(), arguments: "{}".into() },
            }],
            tool_call_id: None,
        };
        let v = serde_json::to_value(&m).expect("json");
        assert_eq!(v["content"], Value::Null);
        assert_eq!(v["tool_calls"][0]["type"], "function");
        assert!(v.get("tool_call_id").is_none());
    }
}
