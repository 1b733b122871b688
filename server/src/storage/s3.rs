//! S3-compatible storage backend, through aws-sdk-s3.
//!
//! Selected by `storage_url = "s3://BUCKET?endpoint=URL&region=REGION"`.
//! Layout under the bucket (and the optional `prefix`):
//! `images/<2 hex>/<sha256>` and `attachments/<2 hex>/<sha256>` for stored
//! objects, as in the local backend, and `uploads/<uuid>` for uploads being
//! verified.
//!
//! Choices, each for a reason:
//! - **Path-style addressing** (`endpoint/bucket/key`): Garage, MinIO and
//!   Ceph serve it without wildcard DNS for virtual-hosted buckets.
//! - **Checksums only when an operation requires them**: the SDK's default
//!   streamed upload encoding (`aws-chunked` with a trailing CRC) is refused
//!   by Garage, and the facade already hashes every upload with sha256.
//! - **Uploads**: an image smaller than one part goes up in one PutObject;
//!   a larger one as a multipart upload, one part in memory at a time, so a
//!   4 GiB image needs `part_size` bytes of memory, not 4 GiB. A failed
//!   upload is aborted. Either way it is written under `uploads/`, and only
//!   once the facade has checked its length and sha256 is it copied to its
//!   content-addressed key (one CopyObject: objects appear whole) and the
//!   staging object deleted. CopyObject copies up to 5 GiB, which is why the
//!   configuration caps `max_image_bytes` there for this backend.
//! - **Reads** pass the byte range through to a ranged GetObject; the
//!   caller knows the length from the database, so no HEAD per range.
//! - **Credentials** come from the standard AWS chain (environment
//!   variables, then the shared profile files, ...): never from Firmup's own
//!   configuration, so no secret sits in a Firmup file or URL.

use std::fmt;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::{
    Region, RequestChecksumCalculation, ResponseChecksumValidation, timeout::TimeoutConfig,
};
use aws_sdk_s3::error::{DisplayErrorContext, SdkError};
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream as S3Body;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt as _;
use tokio_util::io::ReaderStream;

use super::{ByteStream, CheckedChunks, READ_CHUNK_BYTES, Staged, StorageError, StorageKey};

/// The smallest part S3 accepts in a multipart upload (all but the last).
pub const MIN_PART_SIZE: usize = 5 * 1024 * 1024;

/// The largest object one CopyObject copies.
pub const MAX_COPY_BYTES: u64 = 5 * 1024 * 1024 * 1024;

/// Where the images are: a bucket, the endpoint that serves it, its region
/// and an optional key prefix. Parsed from
/// `s3://BUCKET?endpoint=URL&region=REGION&prefix=PATH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    /// The bucket.
    pub bucket: String,
    /// The endpoint URL (`http://127.0.0.1:3900`); `None` for the AWS
    /// default endpoint of the region.
    pub endpoint: Option<String>,
    /// The region; `None` for the AWS chain's (environment, profile),
    /// falling back to `us-east-1`.
    pub region: Option<String>,
    /// Key prefix, empty or ending in `/`, so that several servers or test
    /// runs can share one bucket.
    pub prefix: String,
}

impl S3Location {
    /// Parses an `s3://` storage URL.
    pub fn parse(s: &str) -> anyhow::Result<Self> {
        let url = url::Url::parse(s).with_context(|| format!("storage URL {s:?} is not a URL"))?;
        anyhow::ensure!(
            url.scheme() == "s3",
            "storage URL {s:?}: the scheme must be s3:// (leave storage_url unset for the local directory)"
        );
        let bucket = url.host_str().unwrap_or_default().to_owned();
        anyhow::ensure!(
            (3..=63).contains(&bucket.len())
                && bucket.bytes().all(|b| b.is_ascii_lowercase()
                    || b.is_ascii_digit()
                    || b == b'.'
                    || b == b'-'),
            "storage URL {s:?}: {bucket:?} is not a bucket name (3-63 lowercase letters, digits, '.' and '-')"
        );
        anyhow::ensure!(
            url.path().is_empty() || url.path() == "/",
            "storage URL {s:?}: put a key prefix in ?prefix=, not in the path"
        );
        anyhow::ensure!(
            url.username().is_empty() && url.password().is_none() && url.port().is_none(),
            "storage URL {s:?}: credentials come from the AWS environment or profile, never the URL; \
             the endpoint goes in ?endpoint="
        );
        let mut location = S3Location {
            bucket,
            endpoint: None,
            region: None,
            prefix: String::new(),
        };
        for (k, v) in url.query_pairs() {
            match &*k {
                "endpoint" => {
                    let e = url::Url::parse(&v)
                        .with_context(|| format!("storage URL: endpoint {v:?} is not a URL"))?;
                    anyhow::ensure!(
                        matches!(e.scheme(), "http" | "https")
                            && e.host_str().is_some()
                            && (e.path().is_empty() || e.path() == "/")
                            && e.query().is_none()
                            && e.username().is_empty(),
                        "storage URL: endpoint {v:?} must be http(s)://HOST[:PORT] with no path or credentials"
                    );
                    location.endpoint = Some(v.trim_end_matches('/').to_owned());
                }
                "region" => {
                    anyhow::ensure!(!v.is_empty(), "storage URL: region is empty");
                    location.region = Some(v.into_owned());
                }
                "prefix" => {
                    anyhow::ensure!(
                        v.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"/_.-".contains(&b))
                            && !v.starts_with('/')
                            && !v.split('/').any(|seg| seg == ".."),
                        "storage URL: prefix {v:?} may hold only letters, digits and '/_.-', \
                         and must not start with '/'"
                    );
                    let mut p = v.into_owned();
                    if !p.is_empty() && !p.ends_with('/') {
                        p.push('/');
                    }
                    location.prefix = p;
                }
                other => anyhow::bail!(
                    "storage URL: unknown parameter {other:?} (known: endpoint, region, prefix)"
                ),
            }
        }
        Ok(location)
    }
}

impl fmt::Display for S3Location {
    /// `bucket B at E` for messages: names the endpoint and bucket, never a
    /// credential (none is in the location).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "bucket {:?} at {}",
            self.bucket,
            self.endpoint.as_deref().unwrap_or("the AWS endpoint")
        )?;
        if !self.prefix.is_empty() {
            write!(f, " (prefix {:?})", self.prefix)?;
        }
        Ok(())
    }
}

/// A store in an S3-compatible bucket.
#[derive(Clone)]
pub struct S3Store {
    client: Client,
    location: S3Location,
    part_size: usize,
}

impl fmt::Debug for S3Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Store")
            .field("location", &self.location)
            .field("part_size", &self.part_size)
            .finish_non_exhaustive()
    }
}

impl S3Store {
    /// Connects to the bucket. A missing bucket or refused credentials fail
    /// here, with a message naming the endpoint and bucket; an object store
    /// that cannot be reached only logs a warning: the server starts,
    /// `/readyz` reports it, and service begins once the store answers.
    pub async fn open(location: S3Location, part_size: usize) -> anyhow::Result<Self> {
        anyhow::ensure!(
            part_size >= MIN_PART_SIZE,
            "s3_part_size_bytes must be at least {MIN_PART_SIZE} (S3's smallest part)"
        );
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(region) = &location.region {
            loader = loader.region(Region::new(region.clone()));
        }
        let shared = loader.load().await;
        let mut config = aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(true)
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            // A store that does not answer a connect within seconds is
            // down; there is no overall timeout, since a download of a
            // large image streams for as long as the device reads.
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(3))
                    .build(),
            );
        if shared.region().is_none() {
            config = config.region(Region::new("us-east-1"));
        }
        if let Some(endpoint) = &location.endpoint {
            config = config.endpoint_url(endpoint);
        }
        let store = S3Store {
            client: Client::from_conf(config.build()),
            location,
            part_size,
        };
        match store
            .client
            .head_bucket()
            .bucket(&store.location.bucket)
            .send()
            .await
        {
            Ok(_) => {}
            Err(e) => match status(&e) {
                Some(404) => anyhow::bail!("{} does not exist; create it first", store.location),
                Some(s @ (401 | 403)) => anyhow::bail!(
                    "{} refused access ({s}): check the credentials in the AWS environment \
                     or profile, and the region",
                    store.location
                ),
                Some(s) => anyhow::bail!("{} answered {s} to HeadBucket", store.location),
                None => tracing::warn!(
                    store = %store.location,
                    error = %DisplayErrorContext(&e),
                    "the object store cannot be reached; starting anyway (/readyz reports it)"
                ),
            },
        }
        Ok(store)
    }

    /// The location (for messages and metrics).
    pub fn location(&self) -> &S3Location {
        &self.location
    }

    fn key(&self, key: StorageKey) -> String {
        format!("{}{}", self.location.prefix, key.relative_path())
    }

    fn uploads_prefix(&self) -> String {
        format!("{}uploads/", self.location.prefix)
    }

    fn error<E, R>(&self, op: &str, e: SdkError<E, R>) -> StorageError
    where
        E: std::error::Error + 'static,
        R: fmt::Debug,
    {
        StorageError::Backend(format!(
            "{op} on {}: {}",
            self.location,
            DisplayErrorContext(&e)
        ))
    }

    pub(super) async fn len(&self, key: StorageKey) -> Result<Option<u64>, StorageError> {
        match self
            .client
            .head_object()
            .bucket(&self.location.bucket)
            .key(self.key(key))
            .send()
            .await
        {
            Ok(o) => Ok(Some(o.content_length().unwrap_or(0).max(0) as u64)),
            Err(e) if status(&e) == Some(404) => Ok(None),
            Err(e) => Err(self.error("HeadObject", e)),
        }
    }

    /// Writes a verified chunk stream under `uploads/`: one PutObject if it
    /// fits in a part, else a multipart upload, aborted on any error.
    pub(super) async fn stage(&self, mut body: CheckedChunks<'_>) -> Result<Staged, StorageError> {
        let key = format!("{}{}", self.uploads_prefix(), uuid::Uuid::new_v4());
        let mut buf = BytesMut::new();
        // Fill the first part; an image that ends before it is one PutObject.
        while buf.len() < self.part_size {
            match body.next().await {
                Some(chunk) => buf.extend_from_slice(&chunk?),
                None => {
                    self.put_whole(&key, buf.freeze()).await?;
                    return Ok(Staged::S3(key));
                }
            }
        }
        let upload_id = self
            .client
            .create_multipart_upload()
            .bucket(&self.location.bucket)
            .key(&key)
            .send()
            .await
            .map_err(|e| self.error("CreateMultipartUpload", e))?
            .upload_id
            .ok_or_else(|| {
                StorageError::Backend("CreateMultipartUpload gave no upload id".into())
            })?;
        match self.upload_parts(&key, &upload_id, buf, body).await {
            Ok(()) => Ok(Staged::S3(key)),
            Err(e) => {
                if let Err(abort) = self
                    .client
                    .abort_multipart_upload()
                    .bucket(&self.location.bucket)
                    .key(&key)
                    .upload_id(&upload_id)
                    .send()
                    .await
                {
                    tracing::warn!(
                        error = %DisplayErrorContext(&abort),
                        "could not abort a failed multipart upload; it is cleaned up later"
                    );
                }
                Err(e)
            }
        }
    }

    async fn put_whole(&self, key: &str, bytes: Bytes) -> Result<(), StorageError> {
        self.client
            .put_object()
            .bucket(&self.location.bucket)
            .key(key)
            .content_length(bytes.len() as i64)
            .body(S3Body::from(bytes))
            .send()
            .await
            .map_err(|e| self.error("PutObject", e))?;
        Ok(())
    }

    /// Uploads `buf` and the rest of `body` in parts of `part_size` bytes
    /// (the last one shorter), then completes the upload.
    async fn upload_parts(
        &self,
        key: &str,
        upload_id: &str,
        mut buf: BytesMut,
        mut body: CheckedChunks<'_>,
    ) -> Result<(), StorageError> {
        let mut parts = Vec::new();
        let mut ended = false;
        loop {
            while !ended && buf.len() < self.part_size {
                match body.next().await {
                    Some(chunk) => buf.extend_from_slice(&chunk?),
                    None => ended = true,
                }
            }
            if buf.is_empty() {
                break;
            }
            let take = buf.len().min(self.part_size);
            let part = buf.split_to(take).freeze();
            // S3 numbers parts from 1.
            let number = parts.len() as i32 + 1;
            let done = self
                .client
                .upload_part()
                .bucket(&self.location.bucket)
                .key(key)
                .upload_id(upload_id)
                .part_number(number)
                .content_length(part.len() as i64)
                .body(S3Body::from(part))
                .send()
                .await
                .map_err(|e| self.error("UploadPart", e))?;
            parts.push(
                CompletedPart::builder()
                    .part_number(number)
                    .set_e_tag(done.e_tag)
                    .build(),
            );
            if ended && buf.is_empty() {
                break;
            }
        }
        self.client
            .complete_multipart_upload()
            .bucket(&self.location.bucket)
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| self.error("CompleteMultipartUpload", e))?;
        Ok(())
    }

    /// Copies a verified upload to its content-addressed key: true if it
    /// created the object, false if it was there already (same digest, so
    /// the same bytes).
    pub(super) async fn promote(
        &self,
        staged: &Staged,
        key: StorageKey,
    ) -> Result<bool, StorageError> {
        let Staged::S3(from) = staged else {
            return Err(StorageError::Backend(
                "a staged upload of another backend".into(),
            ));
        };
        if self.len(key).await?.is_some() {
            return Ok(false);
        }
        self.client
            .copy_object()
            .bucket(&self.location.bucket)
            // Keys hold only letters, digits, '/', '_', '.' and '-': no
            // percent-encoding is needed in the copy source.
            .copy_source(format!("{}/{}", self.location.bucket, from))
            .key(self.key(key))
            .send()
            .await
            .map_err(|e| self.error("CopyObject", e))?;
        Ok(true)
    }

    /// Deletes a stored object (S3 answers a missing key with success too).
    pub(super) async fn delete(&self, key: StorageKey) -> Result<(), StorageError> {
        self.client
            .delete_object()
            .bucket(&self.location.bucket)
            .key(self.key(key))
            .send()
            .await
            .map_err(|e| self.error("DeleteObject", e))?;
        Ok(())
    }

    /// Deletes a staged upload.
    pub(super) async fn discard(&self, staged: Staged) -> Result<(), StorageError> {
        if let Staged::S3(key) = staged {
            self.client
                .delete_object()
                .bucket(&self.location.bucket)
                .key(key)
                .send()
                .await
                .map_err(|e| self.error("DeleteObject", e))?;
        }
        Ok(())
    }

    pub(super) async fn read_range(
        &self,
        key: StorageKey,
        start: u64,
        len: u64,
    ) -> Result<ByteStream, StorageError> {
        if len == 0 {
            return Ok(Box::pin(futures_util::stream::empty()));
        }
        let end = start + len - 1;
        let object = self
            .client
            .get_object()
            .bucket(&self.location.bucket)
            .key(self.key(key))
            .range(format!("bytes={start}-{end}"))
            .send()
            .await
            .map_err(|e| match status(&e) {
                Some(404) => StorageError::NotFound,
                _ => self.error("GetObject", e),
            })?;
        Ok(Box::pin(ReaderStream::with_capacity(
            object.body.into_async_read(),
            READ_CHUNK_BYTES,
        )))
    }

    /// A URL that reads the object without credentials until `ttl` passes.
    /// It honours `Range` (the header is not signed, so a device may ask for
    /// any range of the object).
    pub async fn presigned_get(
        &self,
        key: StorageKey,
        ttl: Duration,
    ) -> Result<String, StorageError> {
        let config = PresigningConfig::expires_in(ttl)
            .map_err(|e| StorageError::Backend(format!("presigning: {e}")))?;
        let request = self
            .client
            .get_object()
            .bucket(&self.location.bucket)
            .key(self.key(key))
            .presigned(config)
            .await
            .map_err(|e| self.error("presigning GetObject", e))?;
        Ok(request.uri().to_owned())
    }

    /// Staged objects and unfinished multipart uploads under `uploads/`,
    /// older than `older_than` (all of them for zero), as (objects, upload
    /// ids with their keys).
    async fn staged(
        &self,
        older_than: Duration,
    ) -> Result<(Vec<String>, Vec<(String, String)>), StorageError> {
        let cutoff = SystemTime::now() - older_than;
        let old = |t: Option<&aws_sdk_s3::primitives::DateTime>| {
            t.and_then(|t| SystemTime::try_from(*t).ok())
                .is_none_or(|t| t <= cutoff)
        };
        let mut objects = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.location.bucket)
            .prefix(self.uploads_prefix())
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.error("ListObjectsV2", e))?;
            for o in page.contents() {
                if let Some(k) = o.key()
                    && old(o.last_modified())
                {
                    objects.push(k.to_owned());
                }
            }
        }
        let listed = self
            .client
            .list_multipart_uploads()
            .bucket(&self.location.bucket)
            .prefix(self.uploads_prefix())
            .send()
            .await
            .map_err(|e| self.error("ListMultipartUploads", e))?;
        let uploads = listed
            .uploads()
            .iter()
            .filter(|u| old(u.initiated()))
            .filter_map(|u| Some((u.key()?.to_owned(), u.upload_id()?.to_owned())))
            .collect();
        Ok((objects, uploads))
    }

    /// How many staged uploads exist (objects and unfinished multipart
    /// uploads), however young.
    pub(super) async fn staged_count(&self) -> Result<usize, StorageError> {
        let (objects, uploads) = self.staged(Duration::ZERO).await?;
        Ok(objects.len() + uploads.len())
    }

    pub(super) async fn clean_partial_uploads(
        &self,
        older_than: Duration,
    ) -> Result<usize, StorageError> {
        let (objects, uploads) = self.staged(older_than).await?;
        let removed = objects.len() + uploads.len();
        for key in objects {
            self.discard(Staged::S3(key)).await?;
        }
        for (key, id) in uploads {
            self.client
                .abort_multipart_upload()
                .bucket(&self.location.bucket)
                .key(key)
                .upload_id(id)
                .send()
                .await
                .map_err(|e| self.error("AbortMultipartUpload", e))?;
        }
        Ok(removed)
    }

    pub(super) async fn ready(&self) -> Result<(), StorageError> {
        self.client
            .head_bucket()
            .bucket(&self.location.bucket)
            .send()
            .await
            .map_err(|e| self.error("HeadBucket", e))?;
        Ok(())
    }
}

/// The HTTP status of an S3 error answer; `None` when no answer came (the
/// store could not be reached, or timed out).
fn status<E>(e: &SdkError<E, HttpResponse>) -> Option<u16> {
    e.raw_response().map(|r| r.status().as_u16())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_urls_parse() {
        let l = S3Location::parse(
            "s3://firmup-images?endpoint=http://127.0.0.1:3900/&region=garage&prefix=prod",
        )
        .unwrap();
        assert_eq!(
            l,
            S3Location {
                bucket: "firmup-images".into(),
                endpoint: Some("http://127.0.0.1:3900".into()),
                region: Some("garage".into()),
                prefix: "prod/".into(),
            }
        );
        assert_eq!(
            l.to_string(),
            "bucket \"firmup-images\" at http://127.0.0.1:3900 (prefix \"prod/\")"
        );
        let plain = S3Location::parse("s3://images").unwrap();
        assert_eq!(
            (plain.endpoint, plain.region, plain.prefix),
            (None, None, String::new())
        );
        for bad in [
            "http://bucket",
            "s3://Bucket",
            "s3://b",
            "s3://bucket/path",
            "s3://key:secret@bucket",
            "s3://bucket?endpoint=ftp://x",
            "s3://bucket?endpoint=http://x/path",
            "s3://bucket?prefix=/abs",
            "s3://bucket?prefix=a/../b",
            "s3://bucket?secret=x",
        ] {
            assert!(S3Location::parse(bad).is_err(), "{bad}");
        }
    }
}
