//! # firmup_client
//!
//! The device side of Firmup, and the trust core that the server and the
//! signer share with it:
//!
//! - [`envelope`]: the signed envelope and threshold signature counting;
//! - [`manifest`]: the release manifest format;
//! - [`root`]: root documents, rotation and per-product-line delegation;
//! - [`strict`]: the one strict JSON reading of every signed document;
//! - [`verify`]: the verification engine every party runs;
//! - [`image`]: constant-memory streaming image checks;
//! - [`state`]: the device's trusted state and its crash-safe storage;
//! - [`flash`]: A/B flashing, commit and rollback, the ratchet after commit;
//! - [`transport`]: how bytes reach the device: HTTP (feature `http`) or a
//!   directory (USB/offline);
//! - [`download`]: resumable, length-capped, verified image downloads;
//! - [`protocol`]: the wire types of the server's device API (check,
//!   reports);
//! - [`session`]: the update session a device embeds: check, consent,
//!   download, verify, flash, commit or roll back, report.
//!
//! The verification core does no networking and needs no async runtime;
//! only the `http` feature pulls in an (blocking) HTTP client.
//! It must never hold or need a private key to *verify*; the signing helper
//! on [`envelope::Envelope::sign`] is there for the signer and test fixtures.

pub mod digest;
pub mod download;
pub mod envelope;
pub mod error;
pub mod flash;
pub mod image;
pub mod keys;
pub mod manifest;
pub mod protocol;
pub mod root;
pub mod session;
pub mod state;
pub mod strict;
pub mod transport;
pub mod verify;

pub use digest::Sha256Digest;
pub use download::{Downloaded, Downloader, Progress, RetryPolicy};
pub use envelope::Envelope;
pub use error::{Error, Result};
pub use flash::{
    BootOutcome, FileFlasher, FinishOutcome, Flasher, RollbackReason, Slot, SlotStatus,
    finish_after_boot, install_verified,
};
pub use keys::{KeyId, PublicKey};
pub use manifest::{Advisory, ImageSpec, Manifest, ReleaseKind, SbomFormat, SbomRef, Severity};
pub use protocol::{
    CheckRequest, CheckResponse, CheckStatus, DeviceEntitlement, FetchRequest, FetchResponse,
    ReportRequest, SecuritySupport,
};
pub use root::{RootDocument, TrustedRoot};
pub use session::{
    CheckOutcome, Checked, ClockPolicy, Cycle, CycleOutcome, DeviceConfig, Fetched, Offer,
    SecurityUpdates, UpdateAction, UpdateNotice, UpdateSession,
};
pub use state::{
    FileStateStore, MemoryStateStore, PendingUpdate, QueuedReport, ReportStage, ReportedChoice,
    StateStore, TrustedState,
};
#[cfg(feature = "http")]
pub use transport::HttpTransport;
pub use transport::{FileTransport, Transport};
pub use verify::{Clock, InstalledState, UpdatePlan, VerifyRequest, verify_manifest};

/// Formats a timestamp as RFC 3339 for messages.
pub fn format_time(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

/// The README's Rust examples compile as doc tests, so the embedding example
/// a device vendor copies cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
