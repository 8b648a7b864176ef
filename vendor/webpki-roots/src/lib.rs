//! No trust anchors: DMP's connections trust only the roots their URL
//! names. See this crate's `Cargo.toml` for why it replaces `webpki-roots`.

#![no_std]

use pki_types::TrustAnchor;

/// Empty on purpose.
pub const TLS_SERVER_ROOTS: &[TrustAnchor<'static>] = &[];
