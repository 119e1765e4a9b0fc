//! Protocol revisions this server speaks.

/// The stateless revision: every request carries its version and metadata.
pub const MODERN: &str = "2026-07-28";

/// Revisions that open a session with `initialize`, oldest first.
pub const LEGACY: [&str; 2] = ["2025-06-18", "2025-11-25"];

/// Every supported revision, newest first (the order `server/discover` lists them).
pub const SUPPORTED: [&str; 3] = [MODERN, "2025-11-25", "2025-06-18"];

/// The `_meta` key carrying the protocol version on a modern request.
pub(crate) const META_PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";

/// The `_meta` key carrying the server's identity on a modern result.
pub(crate) const META_SERVER_INFO: &str = "io.modelcontextprotocol/serverInfo";

/// The legacy revision `initialize` settles on: the client's when supported, else the latest.
pub(crate) fn negotiate_legacy(requested: &str) -> &'static str {
    LEGACY
        .iter()
        .copied()
        .find(|known| *known == requested)
        .unwrap_or(LATEST_LEGACY)
}

/// A supported legacy revision, as the static string.
pub(crate) fn legacy(version: &str) -> Option<&'static str> {
    LEGACY.iter().copied().find(|known| *known == version)
}

const LATEST_LEGACY: &str = "2025-11-25";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation() {
        assert_eq!(negotiate_legacy("2025-06-18"), "2025-06-18");
        assert_eq!(negotiate_legacy("2025-11-25"), "2025-11-25");
        assert_eq!(negotiate_legacy("2024-11-05"), "2025-11-25");
        assert_eq!(negotiate_legacy(MODERN), "2025-11-25");
    }
}
