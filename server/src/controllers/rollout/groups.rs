//! `/v1/groups`: device groups, static (a list of serials) or dynamic (a
//! filter judged at each check), with their maintenance windows; and
//! `PUT /v1/admin/devices/{serial}/tags`, the labels dynamic groups filter
//! on.
//!
//! Membership is part of what the check path knows: a static group's
//! members come with each device's cached facts, so changing them drops
//! those devices' facts (`App::device_changed`); filters and windows live
//! in the snapshot (`App::catalogue_changed`).

use std::collections::BTreeSet;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::app::AppState;
use crate::auth::{Admins, Caller, ReleaseEngineers, Staff};
use crate::db::groups::GroupRow;
use crate::db::{self};
use crate::domain::Name;
use crate::domain::group::{check_label, parse_filter};
use crate::domain::window::{Window, WindowSpec};
use crate::error::{AppError, AppResult};
use crate::extract::{JsonBody, Path};

/// Most serials one request adds or removes, and most tags of a device.
pub const MAX_SERIALS_PER_REQUEST: usize = 10_000;
/// Most tags a device carries.
pub const MAX_TAGS: usize = 32;
/// Most serials listed in a group's view.
pub const LISTED_SERIALS: i64 = 1000;

/// A device group.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct GroupView {
    /// Name.
    pub name: String,
    /// `static` (a list of serials) or `dynamic` (a filter).
    pub kind: String,
    /// A dynamic group's filter.
    pub filter: Option<String>,
    /// A static group's number of members (`null` for a dynamic group,
    /// whose members are whoever matches when checking in).
    pub members: Option<u64>,
    /// Its maintenance window: devices of the group are offered updates
    /// only inside it.
    pub window: Option<WindowSpec>,
    /// Who created it.
    pub created_by: String,
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// A static group's first 1000 serials, by serial (in the answers
    /// about one group).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serials: Option<Vec<String>>,
}

async fn view(app: &AppState, g: GroupRow, with_serials: bool) -> AppResult<GroupView> {
    let is_static = g.kind == "static";
    let members = if is_static {
        Some(u64::try_from(db::groups::member_count(&app.db, &g.name).await?).unwrap_or(0))
    } else {
        None
    };
    let serials = if is_static && with_serials {
        Some(db::groups::members(&app.db, &g.name, LISTED_SERIALS).await?)
    } else {
        None
    };
    let window = g
        .maintenance_window
        .as_deref()
        .map(serde_json::from_str::<WindowSpec>)
        .transpose()
        .map_err(|e| AppError::Internal(anyhow::anyhow!("group {} window: {e}", g.name)))?;
    Ok(GroupView {
        name: g.name,
        kind: g.kind,
        filter: g.filter,
        members,
        window,
        created_by: g.created_by,
        created_at: g.created_at,
        serials,
    })
}

fn unknown_group(name: &str) -> AppError {
    AppError::not_found(
        "unknown_group",
        format!("no device group {name:?}; GET /v1/groups lists them"),
    )
}

/// Checks serials from a body: names, each once, at most
/// [`MAX_SERIALS_PER_REQUEST`].
fn serial_list(field: &'static str, serials: &[String]) -> AppResult<Vec<String>> {
    if serials.len() > MAX_SERIALS_PER_REQUEST {
        return Err(AppError::PayloadTooLarge {
            code: "too_many_serials",
            message: format!(
                "{} serials in {field}; at most {MAX_SERIALS_PER_REQUEST} per request: split them",
                serials.len()
            ),
        });
    }
    let mut seen = BTreeSet::new();
    for (i, s) in serials.iter().enumerate() {
        Name::parse("serial", s)
            .map_err(|e| crate::provisioning::in_context(e, format!("{field}[{i}]")))?;
        if !seen.insert(s.as_str()) {
            return Err(AppError::bad_request(
                "duplicate_serial",
                format!("{field}[{i}]: serial {s:?} is listed twice"),
            ));
        }
    }
    Ok(serials.to_vec())
}

/// 422 naming the first serials that are not provisioned.
async fn provisioned(tx: &mut db::Tx, field: &str, serials: &[String]) -> AppResult<()> {
    let missing = db::groups::unknown_serials(tx, serials).await?;
    if missing.is_empty() {
        return Ok(());
    }
    let shown: Vec<&str> = missing.iter().take(10).map(String::as_str).collect();
    Err(AppError::unprocessable(
        "unknown_serial",
        format!(
            "{} serial(s) in {field} are not provisioned: {}{}; provision them first or leave them out",
            missing.len(),
            shown.join(", "),
            if missing.len() > shown.len() {
                ", ..."
            } else {
                ""
            }
        ),
    ))
}

/// A group to create.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateGroup {
    /// Name: 1-64 letters, digits, `-`, `_`, `.`.
    pub name: String,
    /// A filter makes the group dynamic, e.g. `model = E4K and region in
    /// (EU, UK) and version < 2.3.0` (fields: model, hw_id, channel,
    /// region, tag, version).
    pub filter: Option<String>,
    /// The members of a static group (at most 10 000; more with
    /// `POST /v1/groups/{name}/members`).
    #[serde(default)]
    pub serials: Vec<String>,
}

/// Creates a device group (release engineer, admin): dynamic with a
/// filter, else static with the serials given. Audited as `group.create`.
#[utoipa::path(post, path = "/v1/groups", tag = "rollouts", request_body = CreateGroup,
    responses(
        (status = 201, body = GroupView),
        (status = 400, description = "invalid_group_name, invalid_filter, invalid_name, duplicate_serial, invalid_json", body = crate::error::ErrorBody),
        (status = 403, description = "wrong_role", body = crate::error::ErrorBody),
        (status = 409, description = "group_exists, group_is_dynamic", body = crate::error::ErrorBody),
        (status = 413, description = "too_many_serials, body_too_large", body = crate::error::ErrorBody),
        (status = 422, description = "unknown_serial", body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn create(
    State(app): State<AppState>,
    principal: Caller<ReleaseEngineers>,
    JsonBody(req): JsonBody<CreateGroup>,
) -> AppResult<(StatusCode, Json<GroupView>)> {
    let name = check_label("invalid_group_name", "name", &req.name)?.to_owned();
    let filter = req.filter.as_deref().map(parse_filter).transpose()?;
    let serials = serial_list("serials", &req.serials)?;
    if filter.is_some() && !serials.is_empty() {
        return Err(AppError::conflict(
            "group_is_dynamic",
            "a group with a filter is dynamic: its members are the devices that match; \
             leave out either the filter or the serials",
        ));
    }
    let actor = principal.actor();
    let row = GroupRow {
        name: name.clone(),
        kind: if filter.is_some() {
            "dynamic"
        } else {
            "static"
        }
        .into(),
        filter: filter.as_ref().map(|f| f.text().to_owned()),
        maintenance_window: None,
        created_by: actor.label.clone(),
        created_at: OffsetDateTime::now_utc(),
    };
    let mut tx = app.db.begin().await?;
    provisioned(&mut tx, "serials", &serials).await?;
    db::groups::insert(&mut tx, &row)
        .await
        .map_err(|e| match e {
            db::Error::Conflict { .. } => AppError::conflict(
                "group_exists",
                format!("a device group {name:?} exists already; choose another name"),
            ),
            e => e.into(),
        })?;
    for s in &serials {
        db::groups::add_member(&mut tx, &name, s).await?;
        db::invalidations::record(&mut tx, db::invalidations::Kind::Device, s).await?;
    }
    db::audit::record(
        &mut tx,
        &actor,
        "group.create",
        &name,
        serde_json::json!({ "kind": row.kind, "filter": row.filter, "members": serials.len() }),
    )
    .await?;
    tx.commit().await?;
    app.caches
        .forget_devices(serials.iter().map(String::as_str));
    app.catalogue_changed();
    let stored = db::groups::find(&app.db, &name)
        .await?
        .ok_or_else(|| unknown_group(&name))?;
    Ok((StatusCode::CREATED, Json(view(&app, stored, true).await?)))
}

/// Device groups.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct GroupList {
    /// By name.
    pub groups: Vec<GroupView>,
}

/// Lists the device groups (admin, release engineer, technician).
#[utoipa::path(get, path = "/v1/groups", tag = "rollouts",
    responses(
        (status = 200, body = GroupList),
        (status = 403, description = "wrong_role", body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn list(
    State(app): State<AppState>,
    _principal: Caller<Staff>,
) -> AppResult<Json<GroupList>> {
    let mut groups = Vec::new();
    for g in db::groups::all(&app.db).await? {
        groups.push(view(&app, g, false).await?);
    }
    Ok(Json(GroupList { groups }))
}

fn group_name(name: &str) -> AppResult<&str> {
    check_label("invalid_group_name", "group name", name)
}

/// One device group, with a static group's first 1000 serials (admin,
/// release engineer, technician).
#[utoipa::path(get, path = "/v1/groups/{name}", tag = "rollouts",
    params(("name" = String, Path, description = "group name")),
    responses(
        (status = 200, body = GroupView),
        (status = 400, description = "invalid_group_name", body = crate::error::ErrorBody),
        (status = 403, description = "wrong_role", body = crate::error::ErrorBody),
        (status = 404, description = "unknown_group", body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn get(
    State(app): State<AppState>,
    _principal: Caller<Staff>,
    Path(name): Path<String>,
) -> AppResult<Json<GroupView>> {
    let name = group_name(&name)?;
    let g = db::groups::find(&app.db, name)
        .await?
        .ok_or_else(|| unknown_group(name))?;
    Ok(Json(view(&app, g, true).await?))
}

/// Deletes a device group (release engineer, admin), refused while an
/// active rollout is limited to it. Audited as `group.delete`.
#[utoipa::path(delete, path = "/v1/groups/{name}", tag = "rollouts",
    params(("name" = String, Path, description = "group name")),
    responses(
        (status = 204, description = "deleted"),
        (status = 400, description = "invalid_group_name", body = crate::error::ErrorBody),
        (status = 403, description = "wrong_role", body = crate::error::ErrorBody),
        (status = 404, description = "unknown_group", body = crate::error::ErrorBody),
        (status = 409, description = "group_in_use", body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn delete(
    State(app): State<AppState>,
    principal: Caller<ReleaseEngineers>,
    Path(name): Path<String>,
) -> AppResult<StatusCode> {
    let name = group_name(&name)?;
    let mut tx = app.db.begin().await?;
    let g = db::groups::find(&mut tx, name)
        .await?
        .ok_or_else(|| unknown_group(name))?;
    if let Some(rollout) = db::rollouts::group_in_use(&mut tx, name).await? {
        return Err(AppError::conflict(
            "group_in_use",
            format!(
                "rollout {rollout} is limited to group {name:?}; finish or abort it before \
                 deleting the group"
            ),
        ));
    }
    let members = db::groups::members(&mut tx, name, i64::MAX).await?;
    for s in &members {
        db::invalidations::record(&mut tx, db::invalidations::Kind::Device, s).await?;
    }
    db::groups::delete(&mut tx, name).await?;
    db::audit::record(
        &mut tx,
        &principal.actor(),
        "group.delete",
        name,
        serde_json::json!({ "kind": g.kind, "members": members.len() }),
    )
    .await?;
    tx.commit().await?;
    app.caches
        .forget_devices(members.iter().map(String::as_str));
    app.catalogue_changed();
    Ok(StatusCode::NO_CONTENT)
}

/// Members to add to and remove from a static group.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MembersChange {
    /// Serials to add (provisioned; at most 10 000); members already are
    /// left as they are.
    #[serde(default)]
    pub add: Vec<String>,
    /// Serials to remove (at most 10 000); others are ignored.
    #[serde(default)]
    pub remove: Vec<String>,
}

/// Adds and removes members of a static group, all or nothing (release
/// engineer, admin). Audited as `group.members` with the counts.
#[utoipa::path(post, path = "/v1/groups/{name}/members", tag = "rollouts",
    params(("name" = String, Path, description = "group name")),
    request_body = MembersChange,
    responses(
        (status = 200, body = GroupView),
        (status = 400, description = "invalid_group_name, invalid_name, duplicate_serial, invalid_json", body = crate::error::ErrorBody),
        (status = 403, description = "wrong_role", body = crate::error::ErrorBody),
        (status = 404, description = "unknown_group", body = crate::error::ErrorBody),
        (status = 409, description = "group_is_dynamic", body = crate::error::ErrorBody),
        (status = 413, description = "too_many_serials, body_too_large", body = crate::error::ErrorBody),
        (status = 422, description = "unknown_serial", body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn members(
    State(app): State<AppState>,
    principal: Caller<ReleaseEngineers>,
    Path(name): Path<String>,
    JsonBody(req): JsonBody<MembersChange>,
) -> AppResult<Json<GroupView>> {
    let name = group_name(&name)?;
    let add = serial_list("add", &req.add)?;
    let remove = serial_list("remove", &req.remove)?;
    let mut tx = app.db.begin().await?;
    let g = db::groups::find(&mut tx, name)
        .await?
        .ok_or_else(|| unknown_group(name))?;
    if g.kind != "static" {
        return Err(AppError::conflict(
            "group_is_dynamic",
            format!(
                "group {name:?} is dynamic (filter {:?}): its members are the devices that \
                 match; change the devices' tags or create a static group",
                g.filter.as_deref().unwrap_or_default()
            ),
        ));
    }
    provisioned(&mut tx, "add", &add).await?;
    let mut added = 0;
    let mut removed = 0;
    for s in &add {
        if db::groups::add_member(&mut tx, name, s).await? {
            added += 1;
            db::invalidations::record(&mut tx, db::invalidations::Kind::Device, s).await?;
        }
    }
    for s in &remove {
        if db::groups::remove_member(&mut tx, name, s).await? {
            removed += 1;
            db::invalidations::record(&mut tx, db::invalidations::Kind::Device, s).await?;
        }
    }
    db::audit::record(
        &mut tx,
        &principal.actor(),
        "group.members",
        name,
        serde_json::json!({ "added": added, "removed": removed }),
    )
    .await?;
    tx.commit().await?;
    app.caches
        .forget_devices(add.iter().chain(&remove).map(String::as_str));
    let g = db::groups::find(&app.db, name)
        .await?
        .ok_or_else(|| unknown_group(name))?;
    Ok(Json(view(&app, g, true).await?))
}

/// Sets a group's maintenance window (release engineer, admin): its
/// devices are then offered updates only inside it; outside, the check
/// answer says when it opens. Audited as `group.window`.
#[utoipa::path(put, path = "/v1/groups/{name}/window", tag = "rollouts",
    params(("name" = String, Path, description = "group name")),
    request_body = WindowSpec,
    responses(
        (status = 200, body = GroupView),
        (status = 400, description = "invalid_group_name, invalid_window, invalid_timezone, invalid_json", body = crate::error::ErrorBody),
        (status = 403, description = "wrong_role", body = crate::error::ErrorBody),
        (status = 404, description = "unknown_group", body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn set_window(
    State(app): State<AppState>,
    principal: Caller<ReleaseEngineers>,
    Path(name): Path<String>,
    JsonBody(spec): JsonBody<WindowSpec>,
) -> AppResult<Json<GroupView>> {
    let name = group_name(&name)?;
    let window = Window::parse(spec)?;
    let text = serde_json::to_string(window.spec())
        .map_err(|e| AppError::Internal(anyhow::anyhow!("window: {e}")))?;
    change_window(&app, &principal, name, Some(&text)).await
}

/// Removes a group's maintenance window (release engineer, admin).
#[utoipa::path(delete, path = "/v1/groups/{name}/window", tag = "rollouts",
    params(("name" = String, Path, description = "group name")),
    responses(
        (status = 200, body = GroupView),
        (status = 400, description = "invalid_group_name", body = crate::error::ErrorBody),
        (status = 403, description = "wrong_role", body = crate::error::ErrorBody),
        (status = 404, description = "unknown_group", body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn clear_window(
    State(app): State<AppState>,
    principal: Caller<ReleaseEngineers>,
    Path(name): Path<String>,
) -> AppResult<Json<GroupView>> {
    let name = group_name(&name)?;
    change_window(&app, &principal, name, None).await
}

async fn change_window(
    app: &AppState,
    principal: &crate::domain::roles::Principal,
    name: &str,
    window: Option<&str>,
) -> AppResult<Json<GroupView>> {
    let mut tx = app.db.begin().await?;
    if !db::groups::set_window(&mut tx, name, window).await? {
        return Err(unknown_group(name));
    }
    db::audit::record(
        &mut tx,
        &principal.actor(),
        "group.window",
        name,
        serde_json::json!({ "window": window.map(serde_json::from_str::<serde_json::Value>).transpose().ok().flatten() }),
    )
    .await?;
    tx.commit().await?;
    app.catalogue_changed();
    let g = db::groups::find(&app.db, name)
        .await?
        .ok_or_else(|| unknown_group(name))?;
    Ok(Json(view(app, g, false).await?))
}

/// A device's tags, to set.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TagsRequest {
    /// Labels of 1-64 letters, digits, `-`, `_`, `.`; at most 32; the
    /// whole set (an empty list removes them all).
    pub tags: Vec<String>,
}

/// A device's tags.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Tags {
    /// The device.
    pub serial: String,
    /// Its tags, sorted.
    pub tags: Vec<String>,
}

/// Replaces a device's tags (admin), which dynamic groups filter on
/// (`tag = studio`). Audited as `device.tags`.
#[utoipa::path(put, path = "/v1/admin/devices/{serial}/tags", tag = "rollouts",
    params(("serial" = String, Path, description = "device serial")),
    request_body = TagsRequest,
    responses(
        (status = 200, body = Tags),
        (status = 400, description = "invalid_name, invalid_tag, too_many_tags, invalid_json", body = crate::error::ErrorBody),
        (status = 403, description = "wrong_role", body = crate::error::ErrorBody),
        (status = 404, description = "unknown_serial", body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn set_tags(
    State(app): State<AppState>,
    principal: Caller<Admins>,
    Path(serial): Path<String>,
    JsonBody(req): JsonBody<TagsRequest>,
) -> AppResult<Json<Tags>> {
    let serial = Name::parse("serial", &serial)?;
    if req.tags.len() > MAX_TAGS {
        return Err(AppError::bad_request(
            "too_many_tags",
            format!(
                "{} tags; a device carries at most {MAX_TAGS}",
                req.tags.len()
            ),
        ));
    }
    let mut tags = BTreeSet::new();
    for t in &req.tags {
        tags.insert(check_label("invalid_tag", "tag", t)?.to_owned());
    }
    let tags: Vec<String> = tags.into_iter().collect();
    let mut tx = app.db.begin().await?;
    if !db::groups::unknown_serials(&mut tx, std::slice::from_ref(&serial.as_str().to_owned()))
        .await?
        .is_empty()
    {
        return Err(crate::controllers::device::unknown_serial(serial.as_str()));
    }
    db::groups::set_tags(&mut tx, serial.as_str(), &tags).await?;
    db::invalidations::record(&mut tx, db::invalidations::Kind::Device, serial.as_str()).await?;
    db::audit::record(
        &mut tx,
        &principal.actor(),
        "device.tags",
        serial.as_str(),
        serde_json::json!({ "tags": tags }),
    )
    .await?;
    tx.commit().await?;
    app.caches.forget_devices([serial.as_str()]);
    Ok(Json(Tags {
        serial: serial.into_string(),
        tags,
    }))
}
