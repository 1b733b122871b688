//! Authentication: which [`Principal`] is calling (roles and principals
//! are domain types, [`crate::domain::roles`]), and extractors that admit
//! only some roles ([`Caller`]).
//!
//! Clients send `Authorization: Bearer <token>`. Tokens are 32 random bytes
//! (`fu_` + base64url); the server stores only their sha256, which is safe
//! for high-entropy secrets and lets a lookup be one indexed query. Lookups
//! are cached for `token_cache_ttl_secs`, unknown tokens included, so a
//! flood of bad tokens does not reach the database. A revocation drops the
//! token's cached lookups at once on the replica that revoked it and within
//! about two seconds on the others (see [`crate::invalidation`]); expiry is
//! checked on every request, cached or not.
//!
//! This module must never log a token or its hash.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::HeaderMap;
use axum::http::request::Parts;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore as _;
use sha2::{Digest as _, Sha256};
use time::OffsetDateTime;

use crate::app::AppState;
use crate::db::{self, Db};
use crate::domain::roles::{Principal, Role, STAFF};
use crate::error::{AppError, AppResult};
use crate::extract::{REQUEST_ID, bearer_token};

/// A new token secret and the hash stored for it.
pub fn new_token() -> (String, String) {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let secret = format!("fu_{}", URL_SAFE_NO_PAD.encode(bytes));
    let hash = hash_token(&secret);
    (secret, hash)
}

/// The stored form of a token secret.
pub fn hash_token(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, AppError> {
        authenticate(app, &parts.headers).await
    }
}

/// The roles a [`Caller`] extractor admits.
pub trait Roles: Send + Sync + 'static {
    /// The admitted roles (admins pass unless only devices are admitted;
    /// see [`Principal::require`]).
    const ROLES: &'static [Role];
}

/// Admits admins.
#[derive(Debug)]
pub struct Admins;
impl Roles for Admins {
    const ROLES: &'static [Role] = &[Role::Admin];
}

/// Admits release engineers (and admins).
#[derive(Debug)]
pub struct ReleaseEngineers;
impl Roles for ReleaseEngineers {
    const ROLES: &'static [Role] = &[Role::ReleaseEngineer];
}

/// Admits technicians (and admins).
#[derive(Debug)]
pub struct Technicians;
impl Roles for Technicians {
    const ROLES: &'static [Role] = &[Role::Technician];
}

/// Admits staff: release engineers, technicians (and admins).
#[derive(Debug)]
pub struct Staff;
impl Roles for Staff {
    const ROLES: &'static [Role] = STAFF;
}

/// Admits device tokens only.
#[derive(Debug)]
pub struct Devices;
impl Roles for Devices {
    const ROLES: &'static [Role] = &[Role::Device];
}

/// An authenticated caller whose role `R` admits. As an extractor it runs
/// before any body extractor, so a caller with the wrong role gets 403
/// before a byte of the body is read or parsed, and parse errors never
/// describe a request shape to someone who may not send it.
#[derive(Debug)]
pub struct Caller<R: Roles> {
    principal: Principal,
    _roles: std::marker::PhantomData<R>,
}

impl<R: Roles> std::ops::Deref for Caller<R> {
    type Target = Principal;

    fn deref(&self) -> &Principal {
        &self.principal
    }
}

impl<R: Roles> FromRequestParts<AppState> for Caller<R> {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, AppError> {
        let principal = authenticate(app, &parts.headers).await?;
        principal.require(R::ROLES)?;
        Ok(Caller {
            principal,
            _roles: std::marker::PhantomData,
        })
    }
}

/// Authenticates the bearer token in `headers`.
pub async fn authenticate(app: &AppState, headers: &HeaderMap) -> AppResult<Principal> {
    let secret = bearer_token(headers)?.ok_or_else(|| {
        AppError::unauthorized(
            "missing_token",
            "send an API token as `Authorization: Bearer <token>`",
        )
    })?;
    let hash = hash_token(secret);
    // Unknown tokens are cached too (as `None`). A revocation committed
    // while we read the row does not leave the stale lookup cached (see
    // `Caches::get_or_fill`).
    let principal = app
        .caches
        .get_or_fill(("tokens", &app.caches.tokens), &hash, || async {
            lookup(&app.db, &hash).await.map(Some)
        })
        .await?
        .flatten();
    let principal = principal.ok_or_else(|| {
        AppError::invalid_token("invalid_token", "this API token is unknown or revoked")
    })?;
    if principal
        .expires_at
        .is_some_and(|t| t <= OffsetDateTime::now_utc())
    {
        return Err(AppError::invalid_token(
            "expired_token",
            "this API token has expired; ask an administrator for a new one",
        ));
    }
    let mut principal = (*principal).clone();
    principal.request_id = headers
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    Ok(principal)
}

async fn lookup(db: &Db, hash: &str) -> AppResult<Option<Arc<Principal>>> {
    let Some(row) = db::tokens::find_by_hash(db, hash).await? else {
        return Ok(None);
    };
    if row.revoked_at.is_some() {
        return Ok(None);
    }
    let role = Role::parse(&row.role)
        .ok_or_else(|| anyhow::anyhow!("token {} has unknown role {:?}", row.id, row.role))?;
    Ok(Some(Arc::new(Principal {
        token_id: row.id,
        label: row.label,
        role,
        serial: row.serial,
        expires_at: row.expires_at,
        request_id: None,
    })))
}
