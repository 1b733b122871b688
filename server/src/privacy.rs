//! Data-protection requests (docs/PRIVACY.md): export everything held
//! about a unit or an owner, erase a unit, restrict processing, correct a
//! contact (the retention job that prunes what is past its period is
//! [`crate::retention`]).
//!
//! The handlers in `controllers/privacy.rs` check roles and input; this
//! module does the work, in one transaction per request with its audit
//! record.

use std::collections::HashSet;

use serde::Serialize;
use serde_json::{Map, Value, json};
use time::OffsetDateTime;

use crate::app::App;
use crate::db::{self, Db};
use crate::domain::privacy::Pseudonymiser;
use crate::domain::roles::Actor;
use crate::error::{AppError, AppResult};

/// The format of export documents; a reader can rely on its shape.
pub const EXPORT_FORMAT: &str = "firmup-personal-data/1";

/// Everything held about `serial`, one JSON document.
///
/// An audit record that only names the unit among others in its details
/// (a bulk provisioning, a sale import) is exported without those
/// details: they are about other people's units.
pub async fn export_device(db: &Db, serial: &str) -> AppResult<Value> {
    let mut parts = Map::new();
    for (name, rows) in db::privacy::export_device(db, serial).await? {
        let value = if name == "device" {
            rows.into_iter().next().unwrap_or(Value::Null)
        } else {
            Value::Array(rows)
        };
        parts.insert(name.to_owned(), value);
    }
    let ids = |part: &str, key: &str, prefix: &str| -> Vec<String> {
        parts
            .get(part)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|r| r[key].as_str().map(|v| format!("{prefix}{v}")))
            .collect()
    };
    let mut own: HashSet<String> = [serial.to_owned(), format!("device/{serial}")].into();
    own.extend(ids("rmas", "number", "rma/"));
    own.extend(ids("tokens", "id", "token/"));
    let token_ids: HashSet<String> = ids("tokens", "id", "").into_iter().collect();
    if let Some(Value::Array(audit)) = parts.get_mut("audit") {
        for record in audit {
            let target = record["target"].as_str().unwrap_or_default().to_owned();
            let by_unit = record["actor_id"]
                .as_str()
                .is_some_and(|id| token_ids.contains(id));
            if !own.contains(&target) && !by_unit {
                record["detail"] = Value::String(
                    json!({ "note": "this record names the unit among others; its details \
                                     about the other units are left out" })
                    .to_string(),
                );
            }
        }
    }
    Ok(Value::Object(parts))
}

/// Whom an export is about.
#[derive(Debug, Clone)]
pub enum Subject {
    /// One unit.
    Serial(String),
    /// The customer named by this email on RMAs, with all their units.
    Owner(String),
}

/// The export document of `subject`, audited as `privacy.export`. An
/// unknown serial is 404 `unknown_serial`; an email no RMA names is 404
/// `unknown_owner`.
pub async fn export(app: &App, actor: &Actor, subject: &Subject) -> AppResult<Value> {
    let (serials, about, target) = match subject {
        Subject::Serial(s) => {
            if db::devices::find(&app.db, s).await?.is_none() {
                return Err(unknown_device(&app.pseudonyms, &app.db, s).await);
            }
            (
                vec![s.clone()],
                json!({ "serial": s }),
                format!("device/{s}"),
            )
        }
        Subject::Owner(email) => {
            let serials = db::privacy::serials_of_owner(&app.db, email).await?;
            if serials.is_empty() {
                return Err(AppError::not_found(
                    "unknown_owner",
                    "no RMA names this email as the customer's; check its spelling, or export by \
                     serial",
                ));
            }
            // The audit record names the units, never the email: an
            // erasure of the units then leaves nothing of the owner in it.
            (serials, json!({ "email": email }), "owner".to_owned())
        }
    };
    let mut devices = vec![];
    for s in &serials {
        devices.push(export_device(&app.db, s).await?);
    }
    let now = OffsetDateTime::now_utc();
    let mut tx = app.db.begin().await?;
    db::audit::record(
        &mut tx,
        actor,
        "privacy.export",
        &target,
        json!({ "serials": serials }),
    )
    .await?;
    tx.commit().await?;
    Ok(json!({
        "format": EXPORT_FORMAT,
        "generated_at": now.format(&time::format_description::well_known::Rfc3339).ok(),
        "subject": about,
        "devices": devices,
        "not_held": [
            "IP addresses: never stored; the rate limits hold them in memory for at most a minute",
            "request logs: carry no serial unless the operator set log_serials",
        ],
    }))
}

/// The 404 for a serial with no device, or the answer that it was erased.
async fn unknown_device(p: &Pseudonymiser, db: &Db, serial: &str) -> AppError {
    match db::privacy::erased_at(db, &p.pseudonym(serial)).await {
        Ok(Some(at)) => AppError::not_found(
            "device_erased",
            format!(
                "this unit was erased on {}; nothing is held under its serial any more",
                crate::provisioning::format_date(at.date())
            ),
        ),
        _ => AppError::not_found("unknown_serial", "no device has this serial"),
    }
}

/// The answer to an erasure.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ErasureView {
    /// `erased` now, or `already_erased` by an earlier request (nothing
    /// changed).
    pub outcome: String,
    /// What replaces the serial wherever history is kept.
    pub pseudonym: String,
    /// When it was erased.
    #[serde(with = "time::serde::rfc3339")]
    pub erased_at: OffsetDateTime,
    /// What changed (absent when already erased).
    pub changed: Option<db::privacy::Erased>,
    /// What is kept, and why.
    pub kept: Vec<String>,
}

/// What an erasure keeps, and why (docs/PRIVACY.md names the duties).
fn kept() -> Vec<String> {
    vec![
        "the unit's model, hardware id, firmware state and date of sale, under the pseudonym: \
         fleet statistics and the warranty and tax records of the sale"
            .to_owned(),
        "its contracts and licences, under the pseudonym: records of purchases, kept for the \
         accounting duty"
            .to_owned(),
        "its RMAs, reports and audit records, under the pseudonym and without the customer's \
         contact"
            .to_owned(),
    ]
}

/// Erases `serial` for its owner. 404 `unknown_serial` for no such unit;
/// 409 `rma_open` while an RMA of it is open; a unit erased before is
/// answered `already_erased`, changing nothing.
pub async fn erase(app: &App, actor: &Actor, serial: &str, reason: &str) -> AppResult<ErasureView> {
    let p = &app.pseudonyms;
    // A pseudonym names an erased unit's row; asked to erase it, the answer
    // is that it is erased, not a pseudonym of a pseudonym.
    let pseudonym = if Pseudonymiser::looks_like_pseudonym(serial) {
        serial.to_owned()
    } else {
        p.pseudonym(serial)
    };
    let now = OffsetDateTime::now_utc();
    let mut tx = app.db.begin().await?;
    if let Some(at) = db::privacy::erased_at(&mut tx, &pseudonym).await? {
        return Ok(ErasureView {
            outcome: "already_erased".to_owned(),
            pseudonym,
            erased_at: at,
            changed: None,
            kept: kept(),
        });
    }
    if db::devices::find(&mut tx, serial).await?.is_none() {
        return Err(AppError::not_found(
            "unknown_serial",
            "no device has this serial; check it against the unit's label",
        ));
    }
    let plan = db::privacy::plan(&mut tx, serial).await?;
    if !plan.open_rmas.is_empty() {
        return Err(AppError::conflict(
            "rma_open",
            format!(
                "the unit is at the repair desk ({}); close or cancel its RMA first, then erase \
                 it: an open repair needs the customer's contact",
                plan.open_rmas.join(", ")
            ),
        ));
    }
    let linked = (
        plan.replaces.as_deref().map(|s| p.pseudonym(s)),
        plan.replaced_by.as_deref().map(|s| p.pseudonym(s)),
    );
    let (changed, files) = db::privacy::erase(
        &mut tx,
        serial,
        &pseudonym,
        &plan,
        linked,
        now,
        &actor.label,
        reason,
    )
    .await?;
    db::audit::record(
        &mut tx,
        actor,
        "privacy.erase",
        &format!("device/{pseudonym}"),
        json!({ "changed": changed, "reason": reason.replace(serial, &pseudonym) }),
    )
    .await?;
    tx.commit().await?;
    app.caches.forget_devices([serial]);
    app.caches
        .forget_tokens(plan.token_ids.iter().cloned().collect::<HashSet<_>>());
    // The rows are gone; the bytes go now. A file another RMA still names
    // stays (files are stored by content). A failure leaves bytes no row
    // names, which nothing serves.
    for sha in files {
        match db::privacy::attachment_in_use(&app.db, &sha).await {
            Ok(false) => {
                if let Ok(digest) = sha.parse()
                    && let Err(e) = app.storage.delete_attachment(digest).await
                {
                    tracing::warn!(error = %e, "deleting an erased unit's RMA file failed");
                }
            }
            Ok(true) => {}
            Err(e) => tracing::warn!(error = %e, "checking an erased unit's RMA file failed"),
        }
    }
    tracing::info!(pseudonym = %pseudonym, "unit erased");
    Ok(ErasureView {
        outcome: "erased".to_owned(),
        pseudonym,
        erased_at: now,
        changed: Some(changed),
        kept: kept(),
    })
}

/// Restricts processing for `serial` (or lifts the restriction), audited
/// as `privacy.restrict` / `privacy.unrestrict`. Returns the time it is
/// restricted since, `None` when lifted.
pub async fn restrict(
    app: &App,
    actor: &Actor,
    serial: &str,
    restricted: bool,
) -> AppResult<Option<OffsetDateTime>> {
    let mut tx = app.db.begin().await?;
    let Some(current) = db::privacy::restricted_at(&mut tx, serial).await? else {
        drop(tx);
        return Err(unknown_device(&app.pseudonyms, &app.db, serial).await);
    };
    let next = match (restricted, current) {
        (true, Some(since)) => Some(since),
        (true, None) => Some(OffsetDateTime::now_utc()),
        (false, _) => None,
    };
    if next != current {
        db::privacy::set_restricted(&mut tx, serial, next).await?;
        db::invalidations::record(&mut tx, db::invalidations::Kind::Device, serial).await?;
        db::audit::record(
            &mut tx,
            actor,
            if restricted {
                "privacy.restrict"
            } else {
                "privacy.unrestrict"
            },
            &format!("device/{serial}"),
            json!({}),
        )
        .await?;
    }
    tx.commit().await?;
    app.caches.forget_devices([serial]);
    Ok(next)
}

/// Corrects the customer contact on every RMA of `serial`, audited as
/// `privacy.rectify` with the fields that changed, never their values.
pub async fn rectify(
    app: &App,
    actor: &Actor,
    serial: &str,
    contact: &db::privacy::Contact<'_>,
) -> AppResult<u64> {
    let mut tx = app.db.begin().await?;
    if db::devices::find(&mut tx, serial).await?.is_none() {
        drop(tx);
        return Err(unknown_device(&app.pseudonyms, &app.db, serial).await);
    }
    let n = db::privacy::rectify_contact(&mut tx, serial, contact).await?;
    if n == 0 {
        return Err(AppError::unprocessable(
            "no_contact_held",
            "no RMA of this unit holds a customer contact, so there is nothing to correct",
        ));
    }
    db::audit::record(
        &mut tx,
        actor,
        "privacy.rectify",
        &format!("device/{serial}"),
        json!({ "rmas": n, "fields": ["name", "email", "phone"] }),
    )
    .await?;
    tx.commit().await?;
    Ok(n)
}
