//! The JSON body of every error answer (4xx and 5xx) of the authority, the token service and
//! relays: `{"error":{"code":"...","message":"..."}}`. The code is stable and meant for
//! programs; the message is for people and never holds internal detail.

use std::fmt;

use serde::{Deserialize, Serialize};

/// An error answer's body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// The code and message of an [`ErrorBody`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// Stable code (`invalid_token`, `bad_path`, `rate_limited`, ...).
    pub code: String,
    /// Message for people.
    pub message: String,
}

impl ErrorBody {
    /// A body with this code and message.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            error: ErrorDetail {
                code: code.into(),
                message: message.into(),
            },
        }
    }

    /// The JSON text.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a struct of two strings always serialises to JSON")
    }

    /// The body of an error answer, if it has this shape.
    pub fn parse(body: &[u8]) -> Option<Self> {
        serde_json::from_slice(body).ok()
    }
}

impl fmt::Display for ErrorDetail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_body_keeps_its_json_shape() {
        let body = ErrorBody::new("bad_path", "a \"quoted\" path");
        assert_eq!(
            body.to_json(),
            serde_json::json!({"error": {"code": "bad_path", "message": "a \"quoted\" path"}})
                .to_string()
        );
        assert_eq!(ErrorBody::parse(body.to_json().as_bytes()), Some(body));
        assert_eq!(ErrorBody::parse(b"<html>"), None);
    }
}
