//! Issuing and revoking API tokens: the service behind
//! `POST/DELETE /v1/admin/tokens`, device provisioning (one token per
//! device) and `firmup-server token create` / `token revoke`.
//!
//! Every issue and revocation writes its audit record in the same
//! transaction. A revocation also appends a token invalidation there, so
//! every replica drops its cached lookups of the token (this one at once,
//! the others within [`crate::invalidation::POLL_INTERVAL`]).
//!
//! This module must never log a token secret: secrets leave it only in
//! [`CreatedToken`], for the caller to show once.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::app::App;
use crate::auth;
use crate::db::invalidations::Kind;
use crate::db::{self, Db, Tx};
use crate::domain::Name;
use crate::domain::roles::{Actor, Role};
use crate::error::{AppError, AppResult};

/// Longest lifetime a token may be given, in days (ten years). Longer
/// would be "never" in practice; say so by leaving `expires_in_days` out.
pub const MAX_EXPIRES_IN_DAYS: u32 = 3650;

/// A token to create.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    /// Role of the token.
    pub role: Role,
    /// A label saying whose token it is (shown in the audit log).
    pub label: String,
    /// The serial a device token is bound to (device tokens only).
    pub serial: Option<String>,
    /// Days until the token expires, 1-3650 (default: never).
    #[schema(minimum = 1, maximum = 3650)]
    #[serde(default, deserialize_with = "crate::domain::optional_whole_number")]
    pub expires_in_days: Option<u32>,
}

/// A created token. The secret is shown only here, once.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedToken {
    /// Token id (for revocation and the audit log).
    pub id: String,
    /// The secret to send as `Authorization: Bearer <token>`.
    pub token: String,
    /// Role.
    pub role: Role,
    /// Expiry.
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
}

/// Creates a token and its audit record in its own transaction. Shared by
/// the API and the CLI.
pub async fn create_token(db: &Db, actor: &Actor, req: NewToken) -> AppResult<CreatedToken> {
    let mut tx = db.begin().await?;
    let created = create_token_tx(&mut tx, actor, req).await?;
    tx.commit().await?;
    Ok(created)
}

/// Creates a token and its `token.create` audit record inside the caller's
/// transaction, so a token can be issued together with other changes
/// (device provisioning) and disappears with them if the caller rolls back.
/// The secret in the result exists only in memory until the caller shows it.
///
/// Errors (400): `invalid_label`, `serial_required`, `serial_not_allowed`,
/// `invalid_name` (serial), `invalid_expiry`.
pub async fn create_token_tx(tx: &mut Tx, actor: &Actor, req: NewToken) -> AppResult<CreatedToken> {
    let label = crate::domain::check_text("invalid_label", "label", &req.label, 200, false)?;
    let serial = match (req.role, req.serial.as_deref()) {
        (Role::Device, Some(s)) => Some(Name::parse("serial", s)?.into_string()),
        (Role::Device, None) => {
            return Err(AppError::bad_request(
                "serial_required",
                "a device token must be bound to a serial; pass \"serial\"",
            ));
        }
        (_, Some(_)) => {
            return Err(AppError::bad_request(
                "serial_not_allowed",
                "only device tokens are bound to a serial",
            ));
        }
        (_, None) => None,
    };
    let expires_at = req
        .expires_in_days
        .map(|days| expiry(OffsetDateTime::now_utc(), days))
        .transpose()?;
    let (secret, hash) = auth::new_token();
    let id = uuid::Uuid::new_v4().to_string();
    db::tokens::insert(
        tx,
        &id,
        &hash,
        req.role,
        serial.as_deref(),
        label,
        expires_at,
    )
    .await?;
    db::audit::record(
        tx,
        actor,
        "token.create",
        &format!("token/{id}"),
        serde_json::json!({ "role": req.role.as_str(), "label": label, "serial": serial }),
    )
    .await?;
    Ok(CreatedToken {
        id,
        token: secret,
        role: req.role,
        expires_at,
    })
}

/// `now` plus `days`, for 1 to [`MAX_EXPIRES_IN_DAYS`] days; otherwise 400
/// `invalid_expiry`. Never panics, whatever the input.
pub fn expiry(now: OffsetDateTime, days: u32) -> AppResult<OffsetDateTime> {
    let invalid = || {
        AppError::bad_request(
            "invalid_expiry",
            format!(
                "expires_in_days must be 1-{MAX_EXPIRES_IN_DAYS}; leave it out for a token \
                 that does not expire"
            ),
        )
    };
    if days == 0 || days > MAX_EXPIRES_IN_DAYS {
        return Err(invalid());
    }
    now.checked_add(time::Duration::days(days.into()))
        .ok_or_else(invalid)
}

/// Revokes a token with its `token.revoke` audit record and a token
/// invalidation in one transaction, then drops this replica's cached
/// lookups of it: from the moment this returns, this replica refuses the
/// token, and the others do within [`crate::invalidation::POLL_INTERVAL`].
///
/// 404 `unknown_token` when there is no such token or it is already revoked.
pub async fn revoke_token(app: &App, actor: &Actor, id: &str) -> AppResult<()> {
    revoke_token_in_db(&app.db, actor, id).await?;
    app.caches
        .forget_tokens([id.to_string()].into_iter().collect());
    Ok(())
}

/// The database half of [`revoke_token`], for a process that serves
/// nothing (`firmup-server token revoke`): the revocation, its audit record
/// and the token invalidation in one transaction. Every running server
/// refuses the token within [`crate::invalidation::POLL_INTERVAL`], as
/// other replicas do after a revocation through the API.
///
/// 404 `unknown_token` when there is no such token or it is already revoked.
pub async fn revoke_token_in_db(db: &Db, actor: &Actor, id: &str) -> AppResult<()> {
    let mut tx = db.begin().await?;
    if !db::tokens::revoke(&mut tx, id).await? {
        return Err(AppError::not_found(
            "unknown_token",
            format!("no active token with id {id:?}"),
        ));
    }
    db::invalidations::record(&mut tx, Kind::Token, id).await?;
    db::audit::record(
        &mut tx,
        actor,
        "token.revoke",
        &format!("token/{id}"),
        serde_json::json!({}),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_is_bounded_and_never_panics() {
        let now = OffsetDateTime::UNIX_EPOCH;
        assert_eq!(expiry(now, 1).unwrap(), now + time::Duration::days(1));
        assert_eq!(
            expiry(now, MAX_EXPIRES_IN_DAYS).unwrap(),
            now + time::Duration::days(3650)
        );
        for days in [0, MAX_EXPIRES_IN_DAYS + 1, u32::MAX] {
            assert_eq!(expiry(now, days).unwrap_err().code(), "invalid_expiry");
        }
        // Near the end of time's range the sum overflows: an error, not a panic.
        let late = time::Date::MAX.midnight().assume_utc();
        assert_eq!(expiry(late, 1).unwrap_err().code(), "invalid_expiry");
    }
}
