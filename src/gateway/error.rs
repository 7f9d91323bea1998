//! How a call to the gateway fails, as its callers judge it.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GatewayError {
    /// Not answering (connection refused, timeouts, 5xx or 429 through every retry): runs
    /// park until it is back.
    #[error("the LLM gateway is unavailable: {0}")]
    Unavailable(String),
    /// It answered, refusing this request (a bad key, an unknown model, a prompt too long).
    #[error("the LLM gateway refused the request ({status}): {message}")]
    Rejected { status: u16, message: String },
    /// It answered with something that is not a chat completion.
    #[error("the LLM gateway sent a malformed reply: {0}")]
    Malformed(String),
}

impl GatewayError {
    /// Whether the gateway refused the request for carrying tools: the model or the server
    /// has no tool calling (Ollama's "does not support tools", vLLM's "tool choice requires
    /// --enable-auto-tool-choice", a proxy's "does not support parameters: ['tools']").
    pub fn refuses_tools(&self) -> bool {
        let GatewayError::Rejected { status: 400 | 404 | 422 | 501, message } = self else {
            return false;
        };
        let m = message.to_lowercase();
        let about_tools =
            ["tool", "function call", "function_call", "functions"].iter().any(|w| m.contains(w));
        // Not "not allowed" or "not permitted": a schema error in Loom's own tool specs says
        // that, and must not switch the process to text.
        let unsupported =
            ["support", "enable", "requires", "unrecognized"].iter().any(|w| m.contains(w));
        about_tools && unsupported
    }

    /// A stable name for the kind of failure (metrics, logs).
    pub fn kind(&self) -> &'static str {
        match self {
            GatewayError::Unavailable(_) => "unavailable",
            GatewayError::Rejected { .. } => "rejected",
            GatewayError::Malformed(_) => "malformed",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rejected(status: u16, message: &str) -> GatewayError {
        GatewayError::Rejected { status, message: message.into() }
    }

    #[test]
    fn refusals_of_tools_are_told_from_other_refusals() {
        let refusals = [
            (400, "registry.ollama.ai/library/gemma:2b does not support tools"),
            (
                400,
                "\"auto\" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set",
            ),
            (
                400,
                "litellm.UnsupportedParamsError: openai does not support parameters: ['tools', 'tool_choice']",
            ),
            (422, "Function calling is not supported by this model"),
            (501, "tools are not supported"),
            (400, "Unrecognized request argument supplied: tools"),
        ];
        for (status, message) in refusals {
            assert!(rejected(status, message).refuses_tools(), "{message}");
        }
        let others = [
            (
                400,
                "messages with role 'tool' must be a response to a preceding message with 'tool_calls'",
            ),
            (400, "This model's maximum context length is 8192 tokens"),
            (
                400,
                "Additional properties are not allowed ('x' was unexpected) in tools[3].function",
            ),
            (401, "tools are not supported"),
            (500, "tools are not supported"),
        ];
        for (status, message) in others {
            assert!(!rejected(status, message).refuses_tools(), "{status} {message}");
        }
        assert!(!GatewayError::Unavailable("tools are not supported".into()).refuses_tools());
    }
}
