//! The trust chain: devices fetch root rotations; admins add them.

use axum::Json;
use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use firmup_client::root::MAX_ROOT_BYTES;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::auth::{Admins, Caller};
use crate::db;
use crate::error::{AppError, AppResult};
use crate::extract::Query;

/// Routes of this module.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_roots, add_root))
        // Root envelopes are small; refuse more while reading, not after.
        .layer(DefaultBodyLimit::max(MAX_ROOT_BYTES as usize))
}

/// Which roots to list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct AfterQuery {
    /// Only roots newer than this version (default 0: all).
    #[serde(default)]
    pub after: u64,
}

/// Root envelopes, oldest first, each exactly as signed.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RootChain {
    /// Version of the newest root (0 if none is configured).
    pub latest_version: u64,
    /// The envelopes newer than `after`.
    #[schema(value_type = Vec<Object>)]
    pub roots: Vec<Box<RawValue>>,
}

/// Converts stored envelopes to raw JSON values without re-serialising
/// them, so devices verify the exact signed bytes.
pub fn raw_envelopes(envelopes: &[Vec<u8>]) -> AppResult<Vec<Box<RawValue>>> {
    envelopes
        .iter()
        .map(|e| {
            let text = String::from_utf8(e.clone())
                .map_err(|_| anyhow::anyhow!("stored root envelope is not UTF-8"))?;
            RawValue::from_string(text.trim_end().to_string())
                .map_err(|e| AppError::Internal(anyhow::anyhow!("stored root envelope: {e}")))
        })
        .collect()
}

/// The root chain after a version, so a device can walk its rotations.
/// Public: root documents hold public keys only.
#[utoipa::path(get, path = "/v1/trust/roots", tag = "trust", params(AfterQuery),
    responses((status = 200, body = RootChain)))]
pub async fn list_roots(
    State(app): State<AppState>,
    Query(q): Query<AfterQuery>,
) -> AppResult<Json<RootChain>> {
    let trust = app.trust();
    let latest_version = trust.latest().map_or(0, |r| r.version());
    let roots = raw_envelopes(trust.newer_than(q.after))?;
    Ok(Json(RootChain {
        latest_version,
        roots,
    }))
}

/// Answer to adding a root.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RootAdded {
    /// The version now trusted.
    pub version: u64,
}

/// Adds the next root version (admin). With no root configured yet, the
/// body must be a self-signed root version 1; otherwise it must be a valid
/// rotation of the latest root (a threshold of its keys and of its own).
#[utoipa::path(post, path = "/v1/trust/roots", tag = "trust",
    request_body(content = Object, description = "root envelope as written by firmup-signer", content_type = "application/json"),
    responses((status = 201, body = RootAdded), (status = 422, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn add_root(
    State(app): State<AppState>,
    principal: Caller<Admins>,
    body: Result<Bytes, BytesRejection>,
) -> AppResult<(StatusCode, Json<RootAdded>)> {
    let body = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            AppError::PayloadTooLarge {
                code: "root_too_large",
                message: format!(
                    "a root envelope is at most {MAX_ROOT_BYTES} bytes; this is not one"
                ),
            }
        } else {
            AppError::bad_request("unreadable_body", rejection.body_text())
        }
    })?;
    let root = app.trust().accept(&body)?;
    let version = root.version();
    let mut tx = app.db.begin().await?;
    db::trust::insert(&mut tx, version as i64, &body)
        .await
        .map_err(|e| match e {
            e if e.is_conflict() => AppError::conflict(
                "root_version_exists",
                format!("root version {version} was added concurrently"),
            ),
            other => other.into(),
        })?;
    db::audit::record(
        &mut tx,
        &principal.actor(),
        "trust.root.add",
        &format!("root/{version}"),
        serde_json::json!({ "version": version }),
    )
    .await?;
    tx.commit().await?;
    {
        let mut trust = app.trust.write().unwrap_or_else(|e| e.into_inner());
        // Another request may have pushed meanwhile; only push if we are next.
        if trust.latest().map_or(0, |r| r.version()) + 1 == version {
            trust.push(root);
        }
    }
    tracing::info!(root_version = version, "trust root added");
    Ok((StatusCode::CREATED, Json(RootAdded { version })))
}
