//! The server's one error type and its JSON envelope.
//!
//! Every failure a client can see is an [`AppError`] with an HTTP status, a
//! stable machine code and a message a person can act on:
//!
//! ```json
//! { "error": { "code": "unknown_serial", "message": "no device with serial \"X1\" is registered" } }
//! ```
//!
//! Variants are split into the client's fault (4xx) and ours (5xx). Internal
//! detail (SQL, file paths, I/O errors) is logged with a request-scoped
//! tracing event and never returned to the client.
//!
//! The layers beneath convert their own errors into it next to where they
//! define them (`db::Error`, `storage::StorageError`), so that this module
//! names nothing of the server but the code list ([`crate::codes`]).

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// Result alias for handlers and the layers beneath them.
pub type AppResult<T> = Result<T, AppError>;

/// An error a handler returns.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// 400: the request is malformed (bad JSON, bad semver, bad parameter).
    #[error("{message}")]
    BadRequest {
        /// Stable code.
        code: &'static str,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// 401: no credentials, or credentials that are not valid. The answer
    /// carries a `WWW-Authenticate: Bearer` challenge (RFC 9110 section
    /// 11.6.1, RFC 6750 section 3).
    #[error("{message}")]
    Unauthorized {
        /// Stable code.
        code: &'static str,
        /// What is wrong.
        message: String,
        /// A token was sent but is unknown, revoked or expired: the
        /// challenge says `error="invalid_token"`. `false` when no usable
        /// credentials were sent at all (RFC 6750 section 3.1: then no
        /// error code).
        token_rejected: bool,
    },
    /// 403: valid credentials that do not allow this action.
    #[error("{message}")]
    Forbidden {
        /// Stable code.
        code: &'static str,
        /// What is wrong.
        message: String,
    },
    /// 404: the thing named does not exist.
    #[error("{message}")]
    NotFound {
        /// Stable code.
        code: &'static str,
        /// What was not found.
        message: String,
    },
    /// 409: the request conflicts with existing state.
    #[error("{message}")]
    Conflict {
        /// Stable code.
        code: &'static str,
        /// What conflicts.
        message: String,
    },
    /// 415: the body is not in a media type the endpoint accepts.
    #[error("{message}")]
    UnsupportedMediaType {
        /// Stable code.
        code: &'static str,
        /// The media type to send instead.
        message: String,
    },
    /// 413: the body is larger than allowed.
    #[error("{message}")]
    PayloadTooLarge {
        /// Stable code.
        code: &'static str,
        /// The limit and what exceeded it.
        message: String,
    },
    /// 429: too many requests of this kind from this caller.
    #[error("{message}")]
    TooManyRequests {
        /// Stable code.
        code: &'static str,
        /// What limit was reached.
        message: String,
        /// Seconds until a retry can succeed (`Retry-After`).
        retry_after_secs: u64,
    },
    /// 416: the Range cannot be satisfied; carries the full length.
    #[error("{message}")]
    RangeNotSatisfiable {
        /// Stable code.
        code: &'static str,
        /// Length of the representation, for `Content-Range: bytes */len`.
        length: u64,
        /// What is wrong.
        message: String,
    },
    /// 422: well-formed, but refused on its merits (e.g. a manifest that
    /// fails verification). `code` is the verification engine's code.
    #[error("{message}")]
    Unprocessable {
        /// Stable code.
        code: &'static str,
        /// Why it was refused.
        message: String,
    },
    /// 503: a dependency (database, storage) is unavailable; retry later.
    #[error("service unavailable: {0}")]
    Unavailable(String),
    /// 503: the request took longer than `request_timeout_secs`.
    #[error("the request took longer than {0} s; retry it")]
    TimedOut(u64),
    /// 500: a bug or an unexpected failure. Logged, never shown.
    #[error("internal error: {0:#}")]
    Internal(#[from] anyhow::Error),
}

/// The JSON body of every error response.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// Code and message of an error response.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code.
    pub code: String,
    /// Message a person can act on.
    pub message: String,
}

impl AppError {
    /// 400 with a code and message.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        AppError::BadRequest {
            code,
            message: message.into(),
        }
    }

    /// 401 for a request without usable credentials (none, or not in the
    /// `Bearer` scheme).
    pub fn unauthorized(code: &'static str, message: impl Into<String>) -> Self {
        AppError::Unauthorized {
            code,
            message: message.into(),
            token_rejected: false,
        }
    }

    /// 401 for a bearer token that was sent but is unknown, revoked or
    /// expired.
    pub fn invalid_token(code: &'static str, message: impl Into<String>) -> Self {
        AppError::Unauthorized {
            code,
            message: message.into(),
            token_rejected: true,
        }
    }

    /// 403.
    pub fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        AppError::Forbidden {
            code,
            message: message.into(),
        }
    }

    /// 404.
    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        AppError::NotFound {
            code,
            message: message.into(),
        }
    }

    /// 409.
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        AppError::Conflict {
            code,
            message: message.into(),
        }
    }

    /// 422.
    pub fn unprocessable(code: &'static str, message: impl Into<String>) -> Self {
        AppError::Unprocessable {
            code,
            message: message.into(),
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            AppError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            AppError::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            AppError::Forbidden { .. } => StatusCode::FORBIDDEN,
            AppError::NotFound { .. } => StatusCode::NOT_FOUND,
            AppError::Conflict { .. } => StatusCode::CONFLICT,
            AppError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            AppError::UnsupportedMediaType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            AppError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            AppError::RangeNotSatisfiable { .. } => StatusCode::RANGE_NOT_SATISFIABLE,
            AppError::Unprocessable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            AppError::Unavailable(_) | AppError::TimedOut(_) => StatusCode::SERVICE_UNAVAILABLE,
            AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable code.
    pub fn code(&self) -> &'static str {
        match self {
            AppError::BadRequest { code, .. }
            | AppError::Unauthorized { code, .. }
            | AppError::Forbidden { code, .. }
            | AppError::NotFound { code, .. }
            | AppError::Conflict { code, .. }
            | AppError::PayloadTooLarge { code, .. }
            | AppError::UnsupportedMediaType { code, .. }
            | AppError::TooManyRequests { code, .. }
            | AppError::Unprocessable { code, .. }
            | AppError::RangeNotSatisfiable { code, .. } => code,
            AppError::Unavailable(_) => "unavailable",
            AppError::TimedOut(_) => "request_timeout",
            AppError::Internal(_) => "internal",
        }
    }
}

impl From<firmup_client::Error> for AppError {
    /// A verification verdict on something a client submitted.
    fn from(e: firmup_client::Error) -> Self {
        match e {
            firmup_client::Error::TooLarge { .. } => AppError::PayloadTooLarge {
                code: "manifest_too_large",
                message: e.to_string(),
            },
            firmup_client::Error::Io { .. } => {
                AppError::Internal(anyhow::Error::new(e).context("verification I/O"))
            }
            other => AppError::Unprocessable {
                code: other.code(),
                message: other.to_string(),
            },
        }
    }
}

/// The challenge of a 401 to a request that sent no bearer token.
pub const BEARER_CHALLENGE: &str = "Bearer realm=\"firmup\"";

/// The challenge of a 401 to a bearer token that is unknown, revoked or
/// expired.
pub const INVALID_TOKEN_CHALLENGE: &str = "Bearer realm=\"firmup\", error=\"invalid_token\"";

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = self.status();
        // Every code is in the one list (docs and the OpenAPI document are
        // checked against it); a test that reaches an unlisted one fails.
        debug_assert!(
            crate::codes::is_known(self.code()),
            "the error code {:?} is not in server/src/codes.rs",
            self.code()
        );
        let message = match &self {
            // Never leak internal detail; the log has it.
            AppError::Internal(e) => {
                tracing::error!(error = format!("{e:#}"), "internal error");
                "internal error; the server log has the details".to_string()
            }
            AppError::Unavailable(detail) => {
                tracing::warn!(detail = %detail, "dependency unavailable");
                "temporarily unavailable; retry later".to_string()
            }
            other => other.to_string(),
        };
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code().to_string(),
                message,
            },
        };
        let mut response = (status, Json(body)).into_response();
        if let AppError::RangeNotSatisfiable { length, .. } = self
            && let Ok(v) = format!("bytes */{length}").parse()
        {
            response
                .headers_mut()
                .insert(axum::http::header::CONTENT_RANGE, v);
        }
        if let AppError::Unauthorized { token_rejected, .. } = self {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static(if token_rejected {
                    INVALID_TOKEN_CHALLENGE
                } else {
                    BEARER_CHALLENGE
                }),
            );
        }
        let retry_after = match self {
            AppError::TooManyRequests {
                retry_after_secs, ..
            } => Some(retry_after_secs),
            _ if status == StatusCode::SERVICE_UNAVAILABLE => Some(5),
            _ => None,
        };
        if let Some(secs) = retry_after {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(secs),
            );
        }
        response
    }
}
