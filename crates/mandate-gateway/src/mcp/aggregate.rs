//! Aggregation: `/mcp` serves every tool server of the caller's tenant at once (names
//! namespaced `server.tool`), `/mcp/{server}` one of them. Which listings an endpoint
//! serves, tool lists filtered by what the caller may see, and resources and prompts
//! decided on their server's `/resources` / `/prompts` entries and gathered across
//! servers.

use std::sync::Arc;

use mandate_core::calls::{Call, Verdict};
use mandate_mcp::Outcome;
use mandate_policy::CallAction;
use serde_json::{Value, json};

use super::methods::{Plan, hidden};
use super::{Exchange, set};
use crate::GatewayError;
use crate::catalog::{Listing, PROMPTS, RESOURCES, Snapshot};

/// The longest resource URI a subscription names.
const MAX_URI: usize = 2048;

impl Exchange<'_> {
    /// The listings this endpoint serves (one server's, or every server's).
    fn in_view<'s>(
        &self,
        snapshot: &'s Snapshot,
    ) -> impl Iterator<Item = (&'s String, &'s Arc<Listing>)> {
        let only = self.server.map(str::to_owned);
        snapshot
            .tools
            .iter()
            .filter(move |(_, l)| only.as_deref().is_none_or(|s| l.server.name == s))
    }

    /// The name a client uses for a listing.
    fn client_name(&self, listing: &Listing) -> String {
        match self.server {
            Some(_) => listing.tool.name.clone(),
            None => format!("{}.{}", listing.server.name, listing.tool.name),
        }
    }

    pub(super) fn resolve<'s>(
        &self,
        snapshot: &'s Snapshot,
        name: &str,
    ) -> Option<&'s Arc<Listing>> {
        let full = match self.server {
            Some(server) => format!("{server}.{name}"),
            None => name.to_owned(),
        };
        snapshot
            .listing(&full)
            .filter(|l| !l.tool.name.starts_with('/'))
    }

    /// `tools/list`: the tools of this endpoint the caller may see, by the names the
    /// client uses.
    pub(super) async fn list_tools(&self) -> Result<Plan, GatewayError> {
        let gateway = self.gateway;
        let snapshot = gateway.snapshot(&self.caller.mandate).await?;
        let candidates: Vec<&Arc<Listing>> = self
            .in_view(&snapshot)
            .map(|(_, l)| l)
            .filter(|l| !l.tool.name.starts_with('/'))
            .collect();
        let targets = candidates.iter().map(|l| l.target());
        let shown = gateway.calls.visible(self.caller, targets).await?;
        let tools: Vec<Value> = shown
            .iter()
            .filter_map(|t| snapshot.listing(&format!("{}.{}", t.server.name, t.tool.name)))
            .map(|l| {
                let mut def = l.definition.clone();
                if let Some(map) = def.as_object_mut() {
                    map.insert("name".into(), json!(self.client_name(l)));
                }
                def
            })
            .collect();
        Ok(Plan::Local(Ok(json!({"tools": tools}))))
    }

    /// Decides the caller's `action` on a server's `/` entry (`arguments` describe
    /// the request).
    async fn authorize_entry(
        &self,
        listing: &Listing,
        action: CallAction,
        arguments: &Value,
    ) -> Result<Verdict, GatewayError> {
        Ok(self
            .gateway
            .calls
            .authorize(
                self.caller,
                Call {
                    action,
                    target: listing.target(),
                    arguments,
                },
            )
            .await?)
    }

    /// The resources a `subscriptions/listen` names (`resourceSubscriptions`) that the
    /// caller may read, each decided (and recorded) as a read of that URI: on
    /// `/mcp/{server}`, on that server's `/resources` entry; on `/mcp`, found as
    /// `resources/read` finds it (the first server whose entry allows the read and
    /// which has the resource). At most `MAX_SUBSCRIBED` URIs of at most 2 KiB.
    pub(super) async fn subscribable(
        &self,
        params: Option<&Value>,
    ) -> Result<Vec<(Arc<Listing>, String)>, GatewayError> {
        const MAX_SUBSCRIBED: usize = 16;
        let Some(uris) = params
            .and_then(|p| p.pointer("/notifications/resourceSubscriptions"))
            .and_then(Value::as_array)
        else {
            return Ok(Vec::new());
        };
        let snapshot = self.gateway.snapshot(&self.caller.mandate).await?;
        let mut honoured = Vec::new();
        for uri in uris
            .iter()
            .filter_map(Value::as_str)
            .filter(|uri| uri.len() <= MAX_URI)
            .take(MAX_SUBSCRIBED)
        {
            let owner = match self.server {
                Some(server) => {
                    let Some(listing) = snapshot.special(server, RESOURCES) else {
                        return Ok(Vec::new());
                    };
                    let arguments = json!({"method": "resources/read", "target": uri});
                    let verdict = self
                        .authorize_entry(listing, CallAction::ReadResource, &arguments)
                        .await?;
                    matches!(verdict, Verdict::Allow { .. }).then(|| listing.clone())
                }
                None => self.find_resource(&snapshot, uri).await?.0,
            };
            if let Some(listing) = owner {
                honoured.push((listing, uri.to_owned()));
            }
        }
        Ok(honoured)
    }

    /// Decides a resource or prompt request on its server's `/` entry.
    pub(super) async fn on_entry(
        &self,
        entry: &str,
        action: CallAction,
        method: &str,
        params: Option<Value>,
    ) -> Result<Plan, GatewayError> {
        let snapshot = self.gateway.snapshot(&self.caller.mandate).await?;
        let subscribe = matches!(method, "resources/subscribe" | "resources/unsubscribe");
        let (server, params) = match self.server {
            Some(server) => (server.to_owned(), params),
            None if entry == PROMPTS => {
                // Aggregated prompts are namespaced like tools.
                let mut params = params.unwrap_or_else(|| json!({}));
                let name = params
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                let Some((server, prompt)) = name.split_once('.') else {
                    return Ok(Plan::Local(hidden(&name)));
                };
                set(&mut params, "name", json!(prompt));
                (server.to_owned(), Some(params))
            }
            None if subscribe && self.session.is_some() => {
                return self.subscribe_anywhere(&snapshot, method, params).await;
            }
            None => {
                // Aggregated resources: the first server whose entry allows it and
                // which has the resource answers.
                return self
                    .read_anywhere(&snapshot, entry, action, method, params)
                    .await;
            }
        };
        let Some(listing) = snapshot.special(&server, entry) else {
            return Ok(Plan::Local(hidden(&server)));
        };
        let label = params
            .as_ref()
            .and_then(|p| p.get("uri").or_else(|| p.get("name")))
            .cloned()
            .unwrap_or(Value::Null);
        let verdict = self
            .authorize_entry(listing, action, &json!({"method": method, "target": label}))
            .await?;
        match verdict {
            Verdict::Allow { .. } if subscribe && self.session.is_some() => {
                // A session client's subscription is kept here: the gateway reads the
                // resource and tells the session's GET stream of updates (listen.rs).
                let on = method == "resources/subscribe";
                self.keep_subscription(on.then_some(listing), Some(&server), label.as_str())
                    .await
            }
            Verdict::Allow { .. } => Ok(Plan::Forward {
                listing: listing.clone(),
                method: method.to_owned(),
                params,
                tool_name: None,
            }),
            other => Ok(Plan::Local(
                self.refusal(&format!("{server}.{entry}"), other),
            )),
        }
    }

    async fn read_anywhere(
        &self,
        snapshot: &Snapshot,
        entry: &str,
        action: CallAction,
        method: &str,
        params: Option<Value>,
    ) -> Result<Plan, GatewayError> {
        let mut last = hidden(entry);
        for listing in snapshot.tools.values().filter(|l| l.tool.name == entry) {
            match self
                .try_on(listing, action, method, params.as_ref())
                .await?
            {
                Some(Ok(result)) => return Ok(Plan::Local(Ok(result))),
                Some(error) => last = error,
                None => {}
            }
        }
        Ok(Plan::Local(last))
    }

    /// `method` on one server's `entry` if the caller's decision allows it there
    /// (`None` otherwise): the upstream's answer.
    async fn try_on(
        &self,
        listing: &Listing,
        action: CallAction,
        method: &str,
        params: Option<&Value>,
    ) -> Result<Option<Outcome>, GatewayError> {
        let target = params.and_then(|p| p.get("uri")).cloned();
        let verdict = self
            .authorize_entry(
                listing,
                action,
                &json!({"method": method, "target": target}),
            )
            .await?;
        if !matches!(verdict, Verdict::Allow { .. }) {
            return Ok(None);
        }
        let outcome = self
            .gateway
            .call_upstream(
                listing,
                &self.caller.mandate,
                method,
                params.cloned(),
                None,
                self.caller.trace.as_ref(),
            )
            .await;
        Ok(Some(outcome.unwrap_or_else(|e| Err(e.error_object()))))
    }

    /// The server that serves `uri` to this caller on `/mcp`, found as
    /// `resources/read` finds it (each server's read decided and recorded, the first
    /// allowed one that has it), or what that read was answered: the same refusal or
    /// upstream error a read gets.
    async fn find_resource(
        &self,
        snapshot: &Snapshot,
        uri: &str,
    ) -> Result<(Option<Arc<Listing>>, Outcome), GatewayError> {
        let params = json!({"uri": uri});
        let mut last = hidden(RESOURCES);
        for listing in snapshot.tools.values().filter(|l| l.tool.name == RESOURCES) {
            let read = self
                .try_on(
                    listing,
                    CallAction::ReadResource,
                    "resources/read",
                    Some(&params),
                )
                .await?;
            match read {
                Some(Ok(result)) => return Ok((Some(listing.clone()), Ok(result))),
                Some(error) => last = error,
                None => {}
            }
        }
        Ok((None, last))
    }

    /// `resources/subscribe` | `unsubscribe` in a session on `/mcp`: a subscription is
    /// decided as a read of the URI on `/mcp` is, and refused as that read would be;
    /// it is kept for the server that answered the read. Unsubscribing ends the
    /// session's subscriptions to the URI on every server.
    async fn subscribe_anywhere(
        &self,
        snapshot: &Snapshot,
        method: &str,
        params: Option<Value>,
    ) -> Result<Plan, GatewayError> {
        let uri = params
            .as_ref()
            .and_then(|p| p.get("uri"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        if method == "resources/unsubscribe" || uri.is_empty() || uri.len() > MAX_URI {
            return self.keep_subscription(None, None, Some(uri)).await;
        }
        match self.find_resource(snapshot, uri).await? {
            (Some(listing), _) => {
                self.keep_subscription(Some(&listing), None, Some(uri))
                    .await
            }
            (None, refused) => Ok(Plan::Local(refused)),
        }
    }

    /// Keeps (`listing` named) or ends (`None`: on `server`, or on any) the session's
    /// subscription to `uri`.
    async fn keep_subscription(
        &self,
        listing: Option<&Arc<Listing>>,
        server: Option<&str>,
        uri: Option<&str>,
    ) -> Result<Plan, GatewayError> {
        let (Some(session), Some(uri)) = (
            self.session.as_deref(),
            uri.filter(|u| !u.is_empty() && u.len() <= MAX_URI),
        ) else {
            return Err(GatewayError::Invalid(
                "a resource subscription needs a `uri`".into(),
            ));
        };
        if self
            .gateway
            .sessions
            .subscribe(session, self.caller, (listing, server), uri)
            .await
        {
            Ok(Plan::Local(Ok(json!({}))))
        } else {
            Err(GatewayError::Invalid(
                "this session holds as many resource subscriptions as it may".into(),
            ))
        }
    }

    /// Lists resources, templates or prompts across the servers the caller may use.
    pub(super) async fn list_across(
        &self,
        method: &str,
        params: Option<Value>,
    ) -> Result<Plan, GatewayError> {
        let snapshot = self.gateway.snapshot(&self.caller.mandate).await?;
        let (entry, action, key) = match method {
            "prompts/list" => (PROMPTS, CallAction::GetPrompt, "prompts"),
            "resources/templates/list" => {
                (RESOURCES, CallAction::ReadResource, "resourceTemplates")
            }
            _ => (RESOURCES, CallAction::ReadResource, "resources"),
        };
        let listings: Vec<&Arc<Listing>> = self
            .in_view(&snapshot)
            .map(|(_, l)| l)
            .filter(|l| l.tool.name == entry)
            .collect();
        let mut items = Vec::new();
        for listing in listings {
            let verdict = self
                .authorize_entry(listing, action, &json!({"method": method}))
                .await?;
            if !matches!(verdict, Verdict::Allow { .. }) {
                continue;
            }
            if self.server.is_some() {
                // One server: its answer as it is (pagination included).
                return Ok(Plan::Forward {
                    listing: listing.clone(),
                    method: method.to_owned(),
                    params,
                    tool_name: None,
                });
            }
            match self
                .gateway
                .call_upstream(
                    listing,
                    &self.caller.mandate,
                    method,
                    None,
                    None,
                    self.caller.trace.as_ref(),
                )
                .await
            {
                Ok(Ok(result)) => {
                    for mut item in result
                        .get(key)
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default()
                    {
                        if entry == PROMPTS
                            && let Some(name) =
                                item.get("name").and_then(Value::as_str).map(str::to_owned)
                        {
                            set(
                                &mut item,
                                "name",
                                json!(format!("{}.{name}", listing.server.name)),
                            );
                        }
                        items.push(item);
                    }
                }
                Ok(Err(_)) | Err(_) => {
                    tracing::warn!(server = %listing.server.name, method, "an upstream could not list; left out");
                }
            }
        }
        Ok(Plan::Local(Ok(json!({ key: items }))))
    }
}
