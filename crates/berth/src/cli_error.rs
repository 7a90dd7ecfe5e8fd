//! How a failed command reports itself: in text (`error: ...` on standard
//! error, as always) or, with `-o json`, as one JSON document on standard
//! output, `{"error": {"code": ..., "message": ..., "status": ...}}`, so a
//! script that parses the output of `-o json` gets a document either way and
//! tells success from failure by the exit status (docs/cli.md).

use std::fmt;

use serde_json::{json, Value};

/// The registry could not be reached (DNS, connect, TLS, a reset).
pub const CONNECTION_FAILED: &str = "CONNECTION_FAILED";
/// A flag or value the CLI refused before sending anything.
pub const INVALID_ARGUMENT: &str = "INVALID_ARGUMENT";
/// The registry answered with something that is not its JSON (a proxy's
/// error page, a truncated body).
pub const INVALID_RESPONSE: &str = "INVALID_RESPONSE";
/// Anything else the CLI itself ran into (a file it could not read or write).
pub const CLI_ERROR: &str = "CLI_ERROR";

/// A failure with a code: the registry's error code, or one of the CLI's.
#[derive(Debug)]
pub struct CliError {
    pub code: String,
    /// The message alone, for JSON.
    pub message: String,
    /// The HTTP status, when the registry answered.
    pub status: Option<u16>,
    /// The whole text for people (status, code, message, hints).
    pub text: String,
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::error::Error for CliError {}

impl CliError {
    pub fn new(code: &str, message: impl Into<String>) -> CliError {
        let message = message.into();
        CliError {
            code: code.to_string(),
            text: message.clone(),
            message,
            status: None,
        }
    }
}

/// An argument the CLI refuses (exit status 1, code `INVALID_ARGUMENT`).
pub fn invalid_argument(message: impl Into<String>) -> anyhow::Error {
    CliError::new(INVALID_ARGUMENT, message).into()
}

/// `error` and its causes on one line: "a: b: c".
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let next = e.to_string();
        // reqwest and hyper repeat their cause in their own message at times.
        if !text.ends_with(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = e.source();
    }
    text
}

/// The JSON document for a failed command.
pub fn to_json(error: &anyhow::Error) -> Value {
    let coded = error.chain().find_map(|e| e.downcast_ref::<CliError>());
    let (code, message, status) = match coded {
        // The context added around a coded error (which command, which
        // file) is part of the message.
        Some(c) => {
            let context: Vec<String> = error
                .chain()
                .take_while(|e| e.downcast_ref::<CliError>().is_none())
                .map(ToString::to_string)
                .collect();
            let mut message = context.join(": ");
            if !message.is_empty() {
                message.push_str(": ");
            }
            message.push_str(&c.message);
            (c.code.as_str(), message, c.status)
        }
        None => (CLI_ERROR, format!("{error:#}"), None),
    };
    let mut body = json!({ "code": code, "message": message });
    if let Some(status) = status {
        body["status"] = json!(status);
    }
    json!({ "error": body })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coded_errors_keep_their_code_and_context() {
        let e = anyhow::Error::from(CliError {
            code: "NAME_UNKNOWN".into(),
            message: "no such scope map".into(),
            status: Some(404),
            text: "404 Not Found: NAME_UNKNOWN: no such scope map".into(),
        })
        .context("deleting scope map web");
        assert_eq!(
            to_json(&e),
            json!({ "error": {
                "code": "NAME_UNKNOWN",
                "message": "deleting scope map web: no such scope map",
                "status": 404,
            }})
        );
        // Text keeps the whole story.
        assert_eq!(
            format!("{e:#}"),
            "deleting scope map web: 404 Not Found: NAME_UNKNOWN: no such scope map"
        );
    }

    #[test]
    fn other_errors_are_cli_errors_without_a_status() {
        let e = anyhow::anyhow!("disk full").context("cannot write config.json");
        assert_eq!(
            to_json(&e),
            json!({ "error": {
                "code": "CLI_ERROR",
                "message": "cannot write config.json: disk full",
            }})
        );
        let e = invalid_argument("give --ip-address or --subnet");
        assert_eq!(to_json(&e)["error"]["code"], "INVALID_ARGUMENT");
        assert!(to_json(&e)["error"].get("status").is_none());
    }
}
