//! Authentication and roles.
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
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use time::OffsetDateTime;

use crate::app::AppState;
use crate::db;
use crate::error::{AppError, AppResult};

/// What a token may do.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
    clap::ValueEnum,
)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum Role {
    /// Operators: tokens, catalogue, contracts, everything.
    Admin,
    /// Publishes, yanks and promotes releases.
    ReleaseEngineer,
    /// Repair technicians: see full entitlement reasoning, download images.
    Technician,
    /// One device, bound to its serial.
    Device,
}

impl Role {
    /// The stored and displayed name.
    pub fn as_str(&self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::ReleaseEngineer => "release_engineer",
            Role::Technician => "technician",
            Role::Device => "device",
        }
    }

    fn parse(s: &str) -> Option<Role> {
        Some(match s {
            "admin" => Role::Admin,
            "release_engineer" => Role::ReleaseEngineer,
            "technician" => Role::Technician,
            "device" => Role::Device,
            _ => return None,
        })
    }
}

/// Staff who may read the catalogue, releases and reports and download
/// images without a grant (admins pass every staff check).
pub const STAFF: &[Role] = &[Role::ReleaseEngineer, Role::Technician];

/// Who did something, for the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// Token id; `None` for the server's own CLI.
    pub token_id: Option<String>,
    /// Token label.
    pub label: String,
    /// Role.
    pub role: Role,
    /// The request this was done in (`x-request-id`), to find its access
    /// log line; `None` for the server's own CLI.
    pub request_id: Option<String>,
}

impl Actor {
    /// The operator running a server CLI command on the host.
    pub fn cli() -> Self {
        Actor {
            token_id: None,
            label: "server-cli".into(),
            role: Role::Admin,
            request_id: None,
        }
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Token id.
    pub token_id: String,
    /// Token label.
    pub label: String,
    /// Role.
    pub role: Role,
    /// The serial a device token is bound to.
    pub serial: Option<String>,
    /// Token expiry.
    pub expires_at: Option<OffsetDateTime>,
    /// The request's id (`x-request-id`), carried into audit records.
    pub request_id: Option<String>,
}

impl Principal {
    /// Fails with 403 unless the caller has one of `roles`. Admins may do
    /// everything but act as a device.
    pub fn require(&self, roles: &[Role]) -> AppResult<()> {
        if roles.contains(&self.role)
            || (self.role == Role::Admin && !roles.contains(&Role::Device))
        {
            return Ok(());
        }
        let wanted: Vec<_> = roles.iter().map(|r| r.as_str()).collect();
        Err(AppError::forbidden(
            "wrong_role",
            format!(
                "this action needs a token with role {}; this token has role {}",
                wanted.join(" or "),
                self.role.as_str()
            ),
        ))
    }

    /// Fails with 403 unless this is the device token bound to `serial`.
    pub fn require_device(&self, serial: &str) -> AppResult<()> {
        self.require(&[Role::Device])?;
        match &self.serial {
            Some(s) if s == serial => Ok(()),
            _ => Err(AppError::forbidden(
                "token_serial_mismatch",
                format!("this device token is not bound to serial {serial:?}"),
            )),
        }
    }

    /// The caller as an audit actor.
    pub fn actor(&self) -> Actor {
        Actor {
            token_id: Some(self.token_id.clone()),
            label: self.label.clone(),
            role: self.role,
            request_id: self.request_id.clone(),
        }
    }
}

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

/// Cached token lookups: hash -> principal (or `None` for unknown tokens).
pub type TokenCache = moka::sync::Cache<String, Option<Arc<Principal>>>;

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

/// The token in `Authorization: Bearer <token>`: the scheme is matched
/// case-insensitively (RFC 9110 section 11.1); a request with two
/// Authorization headers is refused, since the two could be judged
/// differently by a proxy and by this server.
pub fn bearer_token(headers: &HeaderMap) -> AppResult<Option<&str>> {
    let mut values = headers.get_all(axum::http::header::AUTHORIZATION).iter();
    let Some(header) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(AppError::bad_request(
            "multiple_authorization_headers",
            "send exactly one Authorization header",
        ));
    }
    let malformed = || {
        AppError::unauthorized(
            "malformed_authorization",
            "the Authorization header must be `Bearer <token>`",
        )
    };
    let value = header.to_str().map_err(|_| malformed())?;
    let (scheme, token) = value.split_once(' ').ok_or_else(malformed)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(malformed());
    }
    Ok(Some(token))
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
    let principal = match app.token_cache.get(&hash) {
        Some(cached) => cached,
        None => {
            // A revocation committed while we read the row must not leave
            // the stale lookup cached (see `invalidation`, the epoch).
            let epoch = app.invalidations.epoch();
            let found = lookup(app, &hash).await?;
            app.token_cache.insert(hash.clone(), found.clone());
            if app.invalidations.epoch() != epoch {
                app.token_cache.invalidate(&hash);
            }
            found
        }
    };
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
        .get(crate::router::REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    Ok(principal)
}

async fn lookup(app: &AppState, hash: &str) -> AppResult<Option<Arc<Principal>>> {
    let Some(row) = db::tokens::find_by_hash(&app.db, hash).await? else {
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
