//! Publishing: a signed manifest envelope becomes a release.
//!
//! The order of the checks: the product line exists; a trust root is
//! configured; the engine accepts the envelope for that product line (with
//! the latest root, at the server's clock); the same version on the same
//! channel is either absent, or the very same signed payload (idempotent
//! 200) or a conflict (409); the manifest_version is greater than every
//! other release's on that line and channel (devices would refuse it as a
//! replay otherwise); every image is uploaded with its signed length. The
//! release, its images and the audit record are then written in one
//! transaction, so a crash before the commit leaves nothing visible.
//!
//! Identity is the sha256 of the signed PAYLOAD, not of the envelope:
//! adding a co-signature changes the envelope but not what was signed, so
//! it is still the same release (omicron's idempotent uploads). The stored
//! envelope stays the one first accepted.
//!
//! This module must never store an envelope the engine did not accept, and
//! never store anything but the exact bytes received.

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use bytes::Bytes;
use firmup_client::{Sha256Digest, UpdatePlan};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::{ReleaseInfo, audit_target, load_info, manifest_body};
use crate::app::AppState;
use crate::auth::{Caller, ReleaseEngineers};
use crate::controllers::rollout::rollouts::{RolloutView, full_view};
use crate::db::{
    self,
    releases::{NewRelease, NewReleaseImage, ReleaseRow, Stored},
};
use crate::domain::Name;
use crate::domain::roles::Principal;
use crate::domain::rollout;
use crate::error::{AppError, AppResult};
use crate::extract::{Path, Query};
use crate::publish_check::check_for_publish;
use crate::rollouts::{self, RolloutSpec};

/// Options of a publish.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PublishQuery {
    /// Offer the release to every device regardless of entitlement
    /// (default false). Ignored when the release already exists.
    #[serde(default)]
    pub free_for_all: bool,
    /// Start a staged rollout with the release, in the same transaction:
    /// its phases in percent, e.g. `1,10,50,100`. Without it, the release
    /// is offered to every entitled device at once. Ignored when the
    /// release already exists.
    pub rollout: Option<String>,
    /// With `rollout`: only devices of this group take part.
    pub rollout_group: Option<String>,
    /// With `rollout`: a failure rate above this pauses it (0-100, default 5).
    pub failure_threshold_percent: Option<f64>,
    /// With `rollout`: installs attempted in a phase before its failure
    /// rate counts (default 20).
    pub min_sample: Option<u32>,
    /// With `rollout`: seconds a phase soaks before advancing by itself.
    pub soak_secs: Option<u64>,
}

impl PublishQuery {
    /// The rollout the publish starts, checked before anything is stored.
    pub fn rollout(&self) -> AppResult<Option<RolloutSpec>> {
        let Some(phases) = self.rollout.as_deref() else {
            if self.rollout_group.is_some()
                || self.failure_threshold_percent.is_some()
                || self.min_sample.is_some()
                || self.soak_secs.is_some()
            {
                return Err(AppError::bad_request(
                    "invalid_phases",
                    "rollout_group, failure_threshold_percent, min_sample and soak_secs                      describe a rollout: give its phases too, e.g. rollout=1,10,50,100",
                ));
            }
            return Ok(None);
        };
        RolloutSpec::parse(
            rollout::parse_phases_text(phases)?,
            self.rollout_group.as_deref(),
            self.soak_secs,
            self.failure_threshold_percent,
            self.min_sample,
        )
        .map(Some)
    }
}

/// The outcome of a publish or promote.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PublishOutcome {
    /// `created`, or `already_exists` when the same signed payload was
    /// already published for this version and channel.
    pub status: &'static str,
    /// The release as stored.
    pub release: ReleaseInfo,
    /// The staged rollout the publish started (`?rollout=`), if any.
    pub rollout: Option<RolloutView>,
}

/// Path of a product line's releases.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct LinePath {
    /// Product line id, e.g. `encoders`.
    pub line: String,
}

/// Publishes a release (release engineer). The body is the manifest
/// envelope exactly as written by `firmup-signer sign` (at most 64 KiB).
/// Its images must have been uploaded first (`PUT /v1/uploads/{sha256}`).
#[utoipa::path(post, path = "/v1/product-lines/{line}/releases", tag = "releases",
    params(LinePath, PublishQuery),
    request_body(content = Object, content_type = "application/json",
        description = "manifest envelope as written by firmup-signer sign"),
    responses(
        (status = 201, description = "published", body = PublishOutcome),
        (status = 200, description = "the same signed payload was already published", body = PublishOutcome),
        (status = 400, description = "invalid_phases, invalid_threshold, invalid_min_sample, invalid_soak, invalid_group_name, invalid_query", body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody),
        (status = 404, description = "unknown_product_line", body = crate::error::ErrorBody),
        (status = 409, description = "version_exists, manifest_version_not_increasing, version_precedence_conflict", body = crate::error::ErrorBody),
        (status = 413, description = "manifest_too_large", body = crate::error::ErrorBody),
        (status = 422, description = "no_trust_root, image_missing, unknown_group, or the engine's code (threshold_not_met, expired, wrong_product_line, ...)", body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn publish(
    State(app): State<AppState>,
    principal: Caller<ReleaseEngineers>,
    Path(path): Path<LinePath>,
    Query(query): Query<PublishQuery>,
    body: Result<Bytes, BytesRejection>,
) -> AppResult<(StatusCode, Json<PublishOutcome>)> {
    let result = async {
        let line = Name::parse("product line", &path.line)?;
        let rollout = query.rollout()?;
        let envelope = manifest_body(body)?;
        let plan = verify_submission(&app, &line, &envelope).await?;
        store_release(
            &app,
            &principal,
            &line,
            &envelope,
            &plan,
            query.free_for_all,
            None,
            rollout.as_ref(),
            "release.publish",
            serde_json::json!({}),
        )
        .await
    }
    .await;
    crate::metrics::publish(match &result {
        Ok((StatusCode::CREATED, _)) => "created",
        Ok(_) => "already_published",
        Err(e) => e.code(),
    });
    result
}

/// Checks the product line exists and runs the engine on the envelope with
/// the latest trust root.
pub async fn verify_submission(
    app: &AppState,
    line: &Name,
    envelope: &[u8],
) -> AppResult<UpdatePlan> {
    if !db::releases::product_line_exists(&app.db, line.as_str()).await? {
        return Err(AppError::not_found(
            "unknown_product_line",
            format!(
                "product line {line:?} does not exist; an administrator creates it with \
                 PUT /v1/admin/product-lines/{line}"
            ),
        ));
    }
    // The read guard is not held across an await: the check is synchronous.
    let trust = app.trust();
    let root = trust.latest().ok_or_else(|| {
        AppError::unprocessable(
            "no_trust_root",
            "this server has no trust root, so it cannot verify releases; start it with \
             --trust-root FILE (root version 1) or POST the root to /v1/trust/roots as an admin",
        )
    })?;
    Ok(check_for_publish(
        root,
        line.as_str(),
        envelope,
        OffsetDateTime::now_utc(),
    )?)
}

/// Stores a verified release (idempotently) with its images and an audit
/// record `action` in one transaction, then tells the catalogue snapshot.
/// `detail` is merged into the audit detail. A promotion names the channel
/// it promotes from in `promoted_from`: that release is read again inside
/// the transaction, so a yank that lands meanwhile is never promoted.
/// With `rollout`, the release starts its staged rollout in the same
/// transaction, so it is never offered to every device first.
#[allow(clippy::too_many_arguments)]
pub async fn store_release(
    app: &AppState,
    principal: &Principal,
    line: &Name,
    envelope: &[u8],
    plan: &UpdatePlan,
    free_for_all: bool,
    promoted_from: Option<&str>,
    rollout: Option<&RolloutSpec>,
    action: &'static str,
    detail: serde_json::Value,
) -> AppResult<(StatusCode, Json<PublishOutcome>)> {
    let m = &plan.manifest;
    let version = m.version.to_string();
    let payload_sha256 = Sha256Digest::of(&plan.payload).to_hex();
    let target = audit_target(line.as_str(), &m.channel, &m.version);

    // The quick checks below read one snapshot: read one by one, a publish
    // of this very version committing in between would make a retry of it
    // look like a manifest_version replay (409) instead of the idempotent 200.
    let mut snapshot = app.db.begin_read().await?;
    if let Some(existing) =
        db::releases::find(&mut snapshot, line.as_str(), &m.channel, &version).await?
    {
        drop(snapshot);
        return already_published(app, existing, &payload_sha256, &target).await;
    }

    let manifest_version = i64::try_from(m.manifest_version).map_err(|_| {
        AppError::unprocessable(
            "invalid_manifest_version",
            format!(
                "manifest_version {} is too large for this server (max {})",
                m.manifest_version,
                i64::MAX
            ),
        )
    })?;
    // Checked here for a quick answer, and again inside the transaction
    // (after the insert holds the write lock) against concurrent publishes.
    let latest =
        db::releases::max_manifest_version(&mut snapshot, line.as_str(), &m.channel, None).await?;
    drop(snapshot);
    check_increasing(manifest_version, latest, &m.channel)?;

    for image in &m.images {
        let hex = image.sha256.to_hex();
        let stored = db::images::length(&app.db, &hex).await?;
        if stored != Some(image.length) {
            return Err(AppError::unprocessable(
                "image_missing",
                format!(
                    "image {:?} (sha256 {hex}, {} bytes) is not uploaded; upload it first with \
                     `firmup-signer publish --image {}` or PUT /v1/uploads/{hex}",
                    image.name, image.length, image.name
                ),
            ));
        }
    }

    let hw_compat = serde_json::to_string(&m.hw_compat)
        .map_err(|e| AppError::Internal(anyhow::anyhow!("serialising hw_compat: {e}")))?;
    let requires = m.requires.as_ref().map(|r| r.to_string());
    // Copies of signed fields, for queries (exposure per CVE id); the
    // envelope stays the only source of truth.
    let advisory = m
        .advisory
        .as_ref()
        .map(serde_json::to_string)
        .transpose()
        .map_err(|e| AppError::Internal(anyhow::anyhow!("serialising the advisory: {e}")))?;
    let cves: Vec<String> = m.advisory.iter().flat_map(|a| a.cves.clone()).collect();
    let sbom_sha256 = m.sbom.as_ref().map(|s| s.sha256.to_hex());
    let sbom = match (&m.sbom, &sbom_sha256) {
        (Some(s), Some(hex)) => Some((
            s.format.as_str(),
            hex.as_str(),
            i64::try_from(s.length).unwrap_or(i64::MAX),
        )),
        _ => None,
    };
    let new = NewRelease {
        product_line: line.as_str(),
        channel: &m.channel,
        version: &version,
        manifest_version,
        security_counter: i64::from(m.security_counter),
        requires: requires.as_deref(),
        hw_compat: &hw_compat,
        envelope,
        payload_sha256: &payload_sha256,
        release_notes: m.release_notes.as_deref(),
        free_for_all,
        published_at: OffsetDateTime::now_utc(),
        published_by: &principal.label,
        kind: m.kind().as_str(),
        advisory: advisory.as_deref(),
        cves: &cves,
        mixed_reason: m.mixed_reason.as_deref(),
        sbom,
    };

    let hexes: Vec<String> = m.images.iter().map(|i| i.sha256.to_hex()).collect();
    let images = m
        .images
        .iter()
        .zip(&hexes)
        .map(|(image, hex)| {
            Ok(NewReleaseImage {
                name: &image.name,
                target: &image.target,
                sha256: hex,
                length: i64::try_from(image.length)
                    .map_err(|_| anyhow::anyhow!("image length {} out of range", image.length))?,
            })
        })
        .collect::<Result<Vec<_>, AppError>>()?;

    let mut tx = app.db.begin().await?;
    let id = match db::releases::store(&mut tx, &new, &images).await? {
        Stored::Inserted(id) => id,
        // Published concurrently: answer as if we had come second.
        Stored::AlreadyExists(existing) | Stored::Conflict(existing) => {
            drop(tx);
            return already_published(app, existing, &payload_sha256, &target).await;
        }
    };
    let latest =
        db::releases::max_manifest_version(&mut tx, line.as_str(), &m.channel, Some(id)).await?;
    check_increasing(manifest_version, latest, &m.channel)?;
    if let Some(channel) = promoted_from {
        let source = db::releases::find(&mut tx, line.as_str(), channel, &version).await?;
        match source {
            Some(row) if row.yanked_at.is_none() => {}
            Some(_) => {
                return Err(AppError::conflict(
                    "release_yanked",
                    format!(
                        "{version} on channel {channel} was yanked meanwhile; un-yank it \
                         before promoting it"
                    ),
                ));
            }
            None => {
                return Err(AppError::not_found(
                    "unknown_release",
                    format!("{version} on channel {channel} no longer exists"),
                ));
            }
        }
    }
    // Build metadata has no SemVer precedence: two releases that differ
    // only in it would be the same version to every device, so the second
    // is refused (checked under the write lock, against concurrent ones).
    let others = db::releases::versions_except(&mut tx, line.as_str(), &m.channel, id).await?;
    if let Some(same) = others.iter().find(|v| {
        v.parse::<semver::Version>()
            .is_ok_and(|o| o.cmp_precedence(&m.version).is_eq())
    }) {
        return Err(AppError::conflict(
            "version_precedence_conflict",
            format!(
                "{target} differs from the published {same} only in build metadata, which \
                 SemVer gives no precedence: devices could not tell them apart. Publish it \
                 under a new version"
            ),
        ));
    }
    let mut audit = serde_json::json!({
        "product_line": line.as_str(),
        "channel": m.channel,
        "version": version,
        "manifest_version": m.manifest_version,
        "security_counter": m.security_counter,
        "payload_sha256": payload_sha256,
        "free_for_all": free_for_all,
        "root_version": plan.root_version,
        "signed_by": plan.signed_by.iter().map(|k| k.as_str()).collect::<Vec<_>>(),
        "images": m.images.iter().map(|i| serde_json::json!({
            "name": i.name, "sha256": i.sha256.to_hex(), "length": i.length,
        })).collect::<Vec<_>>(),
    });
    if let (Some(audit), serde_json::Value::Object(extra)) = (audit.as_object_mut(), detail) {
        audit.extend(extra);
    }
    db::audit::record(&mut tx, &principal.actor(), action, &target, audit).await?;
    let rollout_id = match rollout {
        Some(spec) => Some(
            rollouts::start(
                &mut tx,
                &principal.actor(),
                id,
                &target,
                spec,
                OffsetDateTime::now_utc(),
            )
            .await?,
        ),
        None => None,
    };
    tx.commit().await?;
    app.catalogue_changed();
    tracing::info!(release = %target, action, payload_sha256 = %payload_sha256, "release stored");

    let row = db::releases::find(&app.db, line.as_str(), &m.channel, &version)
        .await?
        .ok_or_else(|| anyhow::anyhow!("release {target} vanished after its commit"))?;
    let rollout = match rollout_id {
        Some(rid) => match db::rollouts::find(&app.db, &rid).await? {
            Some(r) => Some(full_view(app, r).await?),
            None => None,
        },
        None => None,
    };
    Ok((
        StatusCode::CREATED,
        Json(PublishOutcome {
            status: "created",
            release: load_info(app, row).await?,
            rollout,
        }),
    ))
}

/// The idempotent answer when the version is already on the channel.
async fn already_published(
    app: &AppState,
    existing: ReleaseRow,
    payload_sha256: &str,
    target: &str,
) -> AppResult<(StatusCode, Json<PublishOutcome>)> {
    if existing.payload_sha256 != payload_sha256 {
        return Err(AppError::conflict(
            "version_exists",
            format!(
                "{target} is already published with a different signed payload (sha256 {}); \
                 this manifest's payload has sha256 {payload_sha256}. A published version never \
                 changes: sign the change as a new version",
                existing.payload_sha256
            ),
        ));
    }
    Ok((
        StatusCode::OK,
        Json(PublishOutcome {
            status: "already_exists",
            release: load_info(app, existing).await?,
            rollout: None,
        }),
    ))
}

fn check_increasing(
    manifest_version: i64,
    latest: Option<(i64, String)>,
    channel: &str,
) -> AppResult<()> {
    match latest {
        Some((highest, version)) if highest >= manifest_version => Err(AppError::conflict(
            "manifest_version_not_increasing",
            format!(
                "manifest_version {manifest_version} is not greater than {highest}, already used \
                 by release {version} on channel {channel}; devices would refuse it as a replay. \
                 Re-sign with --manifest-version {}",
                highest.saturating_add(1)
            ),
        )),
        _ => Ok(()),
    }
}
