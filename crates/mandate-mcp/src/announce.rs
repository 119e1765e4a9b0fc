//! What an upstream announces about itself, outside any one call: its tool, prompt or
//! resource list changed, or a resource changed.
//!
//! These notifications concern every client of the server, not the request whose
//! stream they happen to arrive on, so they are never handed to that request's caller
//! as sent: an upstream hands them to its announcement channel
//! ([`crate::Upstream::announcements`]) and the gateway decides who hears of them. Only
//! the typed value goes on: the upstream's own params never reach a client.

use serde_json::Value;

/// The longest resource URI taken from an announcement (longer: ignored).
pub const MAX_URI_BYTES: usize = 2048;

/// How many announcements an upstream keeps for a slow reader; past it the reader is
/// told it lagged (and should look at everything again).
pub(crate) const CHANNEL: usize = 64;

/// Which of a server's lists changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ListKind {
    Tools,
    Prompts,
    Resources,
}

/// An upstream's announcement, parsed once where it arrives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Announcement {
    /// `notifications/{tools,prompts,resources}/list_changed`.
    ListChanged(ListKind),
    /// `notifications/resources/updated {uri}`.
    ResourceUpdated { uri: String },
}

/// What a server-to-client notification is to the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Heard {
    /// Not an announcement (progress, logs, …): it belongs to the request in flight.
    Other,
    /// An announcement.
    Announced(Announcement),
    /// An announcement's method with params that cannot be used (no `uri`, not a
    /// string, too long, control characters): dropped, never relayed.
    Unusable,
}

impl Heard {
    /// Classifies a notification the server sent by its `method` and `params`.
    pub fn of(method: &str, params: Option<&Value>) -> Heard {
        let list = |kind| Heard::Announced(Announcement::ListChanged(kind));
        match method {
            "notifications/tools/list_changed" => list(ListKind::Tools),
            "notifications/prompts/list_changed" => list(ListKind::Prompts),
            "notifications/resources/list_changed" => list(ListKind::Resources),
            "notifications/resources/updated" => {
                match params.and_then(|p| p.get("uri")).and_then(Value::as_str) {
                    Some(uri)
                        if !uri.is_empty()
                            && uri.len() <= MAX_URI_BYTES
                            && !uri.chars().any(char::is_control) =>
                    {
                        Heard::Announced(Announcement::ResourceUpdated {
                            uri: uri.to_owned(),
                        })
                    }
                    _ => Heard::Unusable,
                }
            }
            _ => Heard::Other,
        }
    }

    /// Classifies a whole message: only notifications can be announcements.
    pub fn of_message(message: &Value) -> Heard {
        match (
            message.get("method").and_then(Value::as_str),
            message.get("id"),
        ) {
            (Some(method), None) => Heard::of(method, message.get("params")),
            _ => Heard::Other,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn list_changes_are_announcements_whatever_their_params() {
        for (method, kind) in [
            ("notifications/tools/list_changed", ListKind::Tools),
            ("notifications/prompts/list_changed", ListKind::Prompts),
            ("notifications/resources/list_changed", ListKind::Resources),
        ] {
            for params in [
                None,
                Some(json!({})),
                Some(json!({"secret": "x".repeat(1 << 20)})),
                Some(json!([1, 2])),
                Some(json!("text")),
            ] {
                assert_eq!(
                    Heard::of(method, params.as_ref()),
                    Heard::Announced(Announcement::ListChanged(kind)),
                    "{method}"
                );
            }
        }
    }

    #[test]
    fn a_resource_update_needs_a_usable_uri() {
        let ok = Heard::of(
            "notifications/resources/updated",
            Some(&json!({"uri": "test://a", "extra": {"deep": [1]}})),
        );
        assert_eq!(
            ok,
            Heard::Announced(Announcement::ResourceUpdated {
                uri: "test://a".into()
            })
        );
        for params in [
            None,
            Some(json!({})),
            Some(json!({"uri": 7})),
            Some(json!({"uri": ""})),
            Some(json!({"uri": "x".repeat(MAX_URI_BYTES + 1)})),
            Some(json!({"uri": "test://a\nforged: header"})),
            Some(json!({"uri": "test://\u{0}"})),
            Some(json!(["test://a"])),
        ] {
            assert_eq!(
                Heard::of("notifications/resources/updated", params.as_ref()),
                Heard::Unusable,
                "{params:?}"
            );
        }
    }

    #[test]
    fn other_messages_are_not_announcements() {
        for message in [
            json!({"jsonrpc": "2.0", "method": "notifications/progress", "params": {}}),
            json!({"jsonrpc": "2.0", "method": "notifications/tools/list_changed/x"}),
            json!({"jsonrpc": "2.0", "method": "NOTIFICATIONS/TOOLS/LIST_CHANGED"}),
            json!({"jsonrpc": "2.0", "method": "notifications/unknown", "params": {"uri": "a"}}),
            // A request of that name is no notification (the caller refuses it).
            json!({"jsonrpc": "2.0", "id": 1, "method": "notifications/tools/list_changed"}),
            json!({"jsonrpc": "2.0", "id": 1, "result": {}}),
            json!({"method": 5}),
        ] {
            assert_eq!(Heard::of_message(&message), Heard::Other, "{message}");
        }
        assert_eq!(
            Heard::of_message(
                &json!({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"})
            ),
            Heard::Announced(Announcement::ListChanged(ListKind::Tools))
        );
    }
}
