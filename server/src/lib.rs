//! # firmup_server
//!
//! The Firmup distribution server. So far it holds the publish check: the
//! decision, made with the same verification engine the devices run, of
//! whether a submitted manifest may become a visible release. The HTTP
//! service, catalogue and storage layers build on it.
//!
//! The server must never hold a private release key: it verifies, it does
//! not sign.

pub mod publish_check;
