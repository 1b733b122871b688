//! Request extractors that answer bad input with the API's error envelope.
//!
//! axum's own `Json`, `Path` and `Query` reject malformed input with plain
//! text; every client of this API instead gets `{"error": {"code",
//! "message"}}` with a stable code, whatever the handler. Handlers import
//! these instead of axum's.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::error::AppError;

/// A JSON request body. Rejections become:
/// - 400 `invalid_json`: not JSON, or JSON of the wrong shape (the message
///   names the field and what was expected);
/// - 400 `missing_content_type`: no `Content-Type: application/json`;
/// - 413 `body_too_large`: over the route's body limit.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonBody<T>(pub T);

impl<T, S> FromRequest<S> for JsonBody<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, AppError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(JsonBody(v)),
            Err(e) => Err(rejection(e)),
        }
    }
}

fn rejection(e: JsonRejection) -> AppError {
    match &e {
        JsonRejection::MissingJsonContentType(_) => AppError::bad_request(
            "missing_content_type",
            "send the body as JSON with `Content-Type: application/json`",
        ),
        _ if e.status() == StatusCode::PAYLOAD_TOO_LARGE => AppError::PayloadTooLarge {
            code: "body_too_large",
            message: "the request body is larger than this endpoint accepts; split it into \
                      several requests"
                .into(),
        },
        _ => AppError::bad_request("invalid_json", e.body_text()),
    }
}

/// Path parameters; a malformed one is 400 `invalid_path` in the envelope.
#[derive(Debug, Clone, Copy, Default)]
pub struct Path<T>(pub T);

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, AppError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(Path(v)),
            Err(e) => Err(AppError::bad_request("invalid_path", e.body_text())),
        }
    }
}

/// Query parameters; a malformed one is 400 `invalid_query` in the envelope.
#[derive(Debug, Clone, Copy, Default)]
pub struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, AppError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(Query(v)),
            Err(e) => Err(AppError::bad_request("invalid_query", e.body_text())),
        }
    }
}
