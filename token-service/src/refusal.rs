//! A refused request: HTTP status, stable code and message, answered with the one JSON error
//! body of the protocol ([`herald_wire::ErrorBody`]). No HTTP framework here: the token
//! logic refuses, the HTTP layer above answers.

use herald_wire::ErrorBody;

/// A refused request: HTTP status, stable code, message.
#[derive(Debug, Clone)]
pub struct Refusal {
    status: u16,
    code: &'static str,
    message: String,
}

impl Refusal {
    /// A refusal with an HTTP status code (400 if `status` is not one).
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status: if (100..=999).contains(&status) {
                status
            } else {
                400
            },
            code,
            message: message.into(),
        }
    }

    /// 400 with this code.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(400, code, message)
    }

    /// 500; the detail goes to the log only.
    pub fn internal(detail: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error");
        Self::new(500, "internal", "internal error; see the server log")
    }

    /// The stable code.
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// The HTTP status.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The JSON body it is answered with.
    pub fn body(&self) -> ErrorBody {
        ErrorBody::new(self.code, self.message.as_str())
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}
