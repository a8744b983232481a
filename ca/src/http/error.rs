//! The one error answer of the HTTP API: status, stable code, public message, as
//! `{"error":{"code":"...","message":"..."}}`, and how each core error becomes one.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use herald_token_service::Refusal;

use crate::core::accounts::AccountError;
use crate::core::admin::{AdminTokenError, AuthError};
use crate::core::authority::{IssueError, RevokeError};
use crate::core::crl::CrlError;
use crate::core::fleet::FleetError;
use crate::core::groups::SetGroupError;
use crate::store::StoreError;

/// An API error: status, stable code, public message.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    pub(crate) fn internal(detail: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; see the server log",
        )
    }
}

fn error_body(status: StatusCode, code: &str, message: &str) -> Response {
    let body = herald_wire::ErrorBody::new(code, message).to_json();
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        error_body(self.status, self.code, &self.message)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(detail) => {
                tracing::error!(error = %detail, "database unavailable");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store_unavailable",
                    "the certificate store is unavailable; nothing was recorded, retry later",
                )
            }
            other => ApiError::internal(&other),
        }
    }
}

impl From<IssueError> for ApiError {
    fn from(e: IssueError) -> Self {
        match e {
            IssueError::Csr(e) => ApiError::new(StatusCode::BAD_REQUEST, "bad_csr", e.to_string()),
            IssueError::Policy(e) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "policy", e.to_string())
            }
            IssueError::Store(e) => e.into(),
            other => ApiError::internal(&other),
        }
    }
}

impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> Self {
        let status = StatusCode::from_u16(r.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        ApiError::new(status, r.code(), r.message())
    }
}

impl From<FleetError> for ApiError {
    fn from(e: FleetError) -> Self {
        match e {
            FleetError::Refused(refusal) => refusal.into(),
            FleetError::Store(e) => e.into(),
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Unauthenticated(_) => {
                ApiError::new(StatusCode::UNAUTHORIZED, "unauthenticated", e.to_string())
            }
            AuthError::Forbidden { .. } => {
                ApiError::new(StatusCode::FORBIDDEN, "forbidden", e.to_string())
            }
            AuthError::Store(e) => e.into(),
        }
    }
}

impl From<AdminTokenError> for ApiError {
    fn from(e: AdminTokenError) -> Self {
        match e {
            AdminTokenError::Store(e) => e.into(),
            other => ApiError::internal(&other),
        }
    }
}

impl From<CrlError> for ApiError {
    fn from(e: CrlError) -> Self {
        match e {
            CrlError::Store(e) => e.into(),
            other => ApiError::internal(&other),
        }
    }
}

impl From<RevokeError> for ApiError {
    fn from(e: RevokeError) -> Self {
        match e {
            RevokeError::NotFound(what) => ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no certificate matches {what}"),
            ),
            other => ApiError::internal(&other),
        }
    }
}

impl From<AccountError> for ApiError {
    fn from(e: AccountError) -> Self {
        match e {
            AccountError::Store(e) => e.into(),
            AccountError::NotFound(_) => {
                ApiError::new(StatusCode::NOT_FOUND, "not_found", e.to_string())
            }
            AccountError::Exists(_) => {
                ApiError::new(StatusCode::CONFLICT, "account_exists", e.to_string())
            }
            AccountError::BadName(_) | AccountError::Rejected(_) => {
                ApiError::new(StatusCode::BAD_REQUEST, "bad_request", e.to_string())
            }
            AccountError::Crypto(_) => ApiError::internal(&e),
        }
    }
}

impl From<SetGroupError> for ApiError {
    fn from(e: SetGroupError) -> Self {
        match e {
            SetGroupError::NoEndpoint(_) => {
                ApiError::new(StatusCode::NOT_FOUND, "not_found", e.to_string())
            }
            SetGroupError::NotAClient { .. } => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "not_a_client",
                e.to_string(),
            ),
            SetGroupError::Store(e) => e.into(),
            other @ SetGroupError::Certificate { .. } => ApiError::internal(&other),
        }
    }
}
