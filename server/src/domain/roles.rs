//! Roles and actors: who may do what ([`Role`]), who is calling
//! ([`Principal`]) and who did something, for the audit log ([`Actor`]).

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

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

    /// Parses the stored name ([`Role::as_str`]).
    pub fn parse(s: &str) -> Option<Role> {
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
