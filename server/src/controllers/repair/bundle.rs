//! The offline bundle of a repair push: `GET /v1/devices/{serial}/push/bundle`
//! streams one tar file holding the pushed release's signed manifest
//! (`manifest.json`), the server's root chain (`root.v<N>.json`) and the
//! release's images under their manifest names: the layout
//! `firmup-device install --bundle` reads, from a directory or this file.
//!
//! The tar is written here rather than with `tar::Builder`, which writes to
//! a blocking `Write`: images stream from storage and must never be held in
//! memory. The `tar` crate still formats every header (ustar, checksum);
//! this module only chains header, data and padding, so the length is known
//! up front and sent as `Content-Length`.

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use futures_util::stream::{self, StreamExt as _, TryStreamExt as _};
use time::OffsetDateTime;

use super::pushes::pushable;
use crate::app::AppState;
use crate::auth::{Caller, Technicians};
use crate::controllers::catalogue::unknown_serial;
use crate::db;
use crate::domain::{Name, parse_sha256};
use crate::error::{AppError, AppResult};
use crate::extract::Path;
use crate::storage::{ByteStream, StorageKey};

/// The tar block size.
const BLOCK: u64 = 512;

/// One file of the bundle: its name, length and where its bytes come from.
enum Entry {
    Inline(String, Vec<u8>),
    Image(String, StorageKey, u64),
}

impl Entry {
    fn name(&self) -> &str {
        match self {
            Entry::Inline(n, _) | Entry::Image(n, _, _) => n,
        }
    }

    fn len(&self) -> u64 {
        match self {
            Entry::Inline(_, b) => b.len() as u64,
            Entry::Image(_, _, l) => *l,
        }
    }
}

/// Bytes of padding after `len` bytes of data, up to the next block.
fn padding(len: u64) -> u64 {
    (BLOCK - len % BLOCK) % BLOCK
}

/// The ustar header of one file.
fn header(name: &str, len: u64, mtime: u64) -> AppResult<Bytes> {
    let mut h = tar::Header::new_ustar();
    h.set_path(name)
        .map_err(|e| anyhow::anyhow!("bundle entry name {name:?}: {e}"))?;
    h.set_size(len);
    h.set_mode(0o644);
    h.set_mtime(mtime);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    Ok(Bytes::copy_from_slice(h.as_bytes()))
}

/// Downloads the offline bundle of the device's active push (technician,
/// admin): a tar of `manifest.json`, the root chain `root.v<N>.json` and the
/// images, for `firmup-device install --bundle FILE` at the bench. A push
/// of the newest release bundles the newest release the device can take
/// now. Audited as `device.push_bundle`.
#[utoipa::path(get, path = "/v1/devices/{serial}/push/bundle", tag = "repair",
    params(("serial" = String, Path, description = "device serial")),
    responses(
        (status = 200, description = "the bundle (application/x-tar)", content_type = "application/x-tar"),
        (status = 400, description = "invalid_name", body = crate::error::ErrorBody),
        (status = 403, description = "wrong_role", body = crate::error::ErrorBody),
        (status = 404, description = "unknown_serial, no_active_push, unknown_release", body = crate::error::ErrorBody),
        (status = 409, description = "release_yanked", body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn download(
    State(app): State<AppState>,
    principal: Caller<Technicians>,
    Path(serial): Path<String>,
) -> AppResult<Response> {
    let serial = Name::parse("serial", &serial)?;
    let now = OffsetDateTime::now_utc();
    let mut tx = app.db.begin().await?;
    let row = db::devices::find(&mut tx, serial.as_str())
        .await?
        .ok_or_else(|| unknown_serial(serial.as_str()))?;
    let push = db::pushes::active(&mut tx, serial.as_str())
        .await?
        .filter(|p| now < p.expires_at)
        .ok_or_else(|| {
            AppError::not_found(
                "no_active_push",
                format!(
                    "device {serial} has no active push; push a release first (POST \
                     /v1/devices/{serial}/push), then download its bundle"
                ),
            )
        })?;
    let releases = db::releases::list(&app.db, &push.product_line).await?;
    let running = row
        .device
        .current_version
        .as_deref()
        .and_then(|v| v.parse::<semver::Version>().ok());
    let counter = row.device.security_counter.unwrap_or(0);
    let release = match &push.version {
        Some(v) => releases
            .iter()
            .find(|r| r.channel == push.channel && &r.version == v),
        None => releases
            .iter()
            .filter(|r| pushable(r, &row, &push.channel, running.as_ref(), counter))
            .filter_map(|r| r.version.parse::<semver::Version>().ok().map(|v| (v, r)))
            .max_by(|a, b| a.0.cmp_precedence(&b.0))
            .map(|(_, r)| r),
    }
    .ok_or_else(|| {
        AppError::not_found(
            "unknown_release",
            format!(
                "the release of the push to {serial} ({}) is not in the catalogue any more; \
                 cancel the push and push another release",
                push.version.as_deref().unwrap_or("the newest release")
            ),
        )
    })?;
    if let Some(at) = release.yanked_at {
        return Err(AppError::conflict(
            "release_yanked",
            format!(
                "release {} was yanked at {at} after it was pushed; cancel the push and push \
                 another release",
                release.version
            ),
        ));
    }
    let manifest = db::releases::envelope(&app.db, release.id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("release {} has no stored envelope", release.id))?;
    let mut entries = vec![Entry::Inline(
        firmup_client::session::BUNDLE_MANIFEST.to_owned(),
        manifest,
    )];
    for (version, envelope) in db::trust::chain(&app.db).await? {
        entries.push(Entry::Inline(format!("root.v{version}.json"), envelope));
    }
    for image in db::releases::images_of(&app.db, release.id).await? {
        let digest = parse_sha256(&image.sha256)?;
        let len = u64::try_from(image.length).unwrap_or(0);
        entries.push(Entry::Image(image.name, StorageKey::image(digest), len));
    }
    db::audit::record(
        &mut tx,
        &principal.actor(),
        "device.push_bundle",
        &format!("device/{serial}"),
        serde_json::json!({
            "push": push.id,
            "rma": push.rma,
            "version": release.version,
            "files": entries.iter().map(Entry::name).collect::<Vec<_>>(),
        }),
    )
    .await?;
    tx.commit().await?;

    let mtime = u64::try_from(release.published_at.unix_timestamp()).unwrap_or(0);
    let total: u64 = entries
        .iter()
        .map(|e| BLOCK + e.len() + padding(e.len()))
        .sum::<u64>()
        + 2 * BLOCK;
    let mut parts: Vec<ByteStream> = Vec::new();
    for e in entries {
        let (name, len) = (e.name().to_owned(), e.len());
        parts.push(Box::pin(stream::once(std::future::ready(Ok(header(
            &name, len, mtime,
        )?)))));
        match e {
            Entry::Inline(_, bytes) => {
                parts.push(Box::pin(stream::once(std::future::ready(Ok(Bytes::from(
                    bytes,
                ))))));
            }
            Entry::Image(_, key, len) => {
                // Opened when the bundle reaches it, so a long bundle holds
                // one storage read at a time.
                let storage = app.storage.clone();
                parts.push(Box::pin(
                    stream::once(async move {
                        storage
                            .read_range(key, 0, len)
                            .await
                            .map_err(|e| std::io::Error::other(e.to_string()))
                    })
                    .try_flatten(),
                ));
            }
        }
        let pad = padding(len);
        if pad > 0 {
            parts.push(zeros(pad));
        }
    }
    parts.push(zeros(2 * BLOCK));
    let body = Body::from_stream(stream::iter(parts).flatten());
    let filename = format!("firmup-bundle-{serial}-{}.tar", release.version);
    let mut res = Response::new(body);
    *res.status_mut() = StatusCode::OK;
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-tar"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(total));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{filename}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    tracing::info!(serial = %app.log_serial(serial.as_str()), push = %push.id, version = %release.version, "push bundle");
    Ok(res)
}

fn zeros(n: u64) -> ByteStream {
    let n = usize::try_from(n).unwrap_or(0);
    Box::pin(stream::once(std::future::ready(Ok(Bytes::from(vec![
        0u8;
        n
    ])))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_fill_whole_blocks() {
        assert_eq!(padding(0), 0);
        assert_eq!(padding(1), 511);
        assert_eq!(padding(512), 0);
        assert_eq!(padding(513), 511);
        let h = header("manifest.json", 10, 0).unwrap();
        assert_eq!(h.len() as u64, BLOCK);
    }
}
