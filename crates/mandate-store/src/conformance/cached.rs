//! [`crate::CachedStore`] over an adapter: what it serves from memory, and that every
//! write through it is seen at once. Run by the adapters' tests with
//! [`crate::cached_store_conformance!`]; the whole store suite also runs through it.

use std::time::Duration as StdDuration;

use super::*;
use crate::{CachedStore, Calls as _, Catalog as _, Directory as _, Grants as _, Mandates as _};

/// One hour: long enough that only an eviction or a clear can refresh an entry.
const LONG: StdDuration = StdDuration::from_secs(3_600);

#[macro_export]
macro_rules! cached_store_conformance {
    ($fresh:path) => {
        $crate::store_conformance!(@cases $fresh;
            cache_serves_memory_until_evicted_or_cleared,
            cache_sees_its_own_writes_at_once,
            cache_keeps_tenants_apart,
            cache_counts_catalog_changes,
            cache_wakes_feeds_on_local_revocations,
        );
    };
}

/// The next version of `m`, revoked.
fn revoked(m: &Mandate) -> Mandate {
    let mut next = m.clone();
    next.apply(MandateEvent::Revoke { reason: None }, t0())
        .unwrap();
    next.version += 1;
    next
}

fn disabled(a: &Agent) -> Agent {
    let mut a = a.clone();
    a.status = AgentStatus::Disabled;
    a
}

/// Changes made behind the cache's back (another process) are not seen until the entry
/// is cleared or ages out: proof that reads are served from memory.
pub async fn cache_serves_memory_until_evicted_or_cleared(inner: Arc<dyn Store>) {
    let m = activated_mandate(&*inner).await;
    let cached = CachedStore::with_ttl(inner.clone(), LONG);
    let bot = cached
        .agent(m.tenant_id, m.terms.agent_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(bot.status, AgentStatus::Active);
    inner.update_agent(&disabled(&bot)).await.unwrap();
    let again = cached.agent(m.tenant_id, bot.id).await.unwrap().unwrap();
    assert_eq!(again.status, AgentStatus::Active, "served from memory");
    cached.clear();
    let fresh = cached.agent(m.tenant_id, bot.id).await.unwrap().unwrap();
    assert_eq!(
        fresh.status,
        AgentStatus::Disabled,
        "read again after a clear"
    );

    // With no time to live, nothing is served from memory.
    let uncached = CachedStore::with_ttl(inner.clone(), StdDuration::ZERO);
    assert_eq!(
        uncached
            .mandate(m.tenant_id, m.id)
            .await
            .unwrap()
            .unwrap()
            .status,
        MandateStatus::Active
    );
    let ended = revoked(&m);
    inner.update_mandate(&ended, &[]).await.unwrap();
    assert_eq!(
        uncached
            .mandate(m.tenant_id, m.id)
            .await
            .unwrap()
            .unwrap()
            .status,
        MandateStatus::Revoked
    );
}

/// Writes through the cache evict what they touch: the next read is the new state.
pub async fn cache_sees_its_own_writes_at_once(inner: Arc<dyn Store>) {
    let m = activated_mandate(&*inner).await;
    let cached = CachedStore::with_ttl(inner.clone(), LONG);
    let bot = cached
        .agent(m.tenant_id, m.terms.agent_id)
        .await
        .unwrap()
        .unwrap();
    cached.update_agent(&disabled(&bot)).await.unwrap();
    assert_eq!(
        cached
            .agent(m.tenant_id, bot.id)
            .await
            .unwrap()
            .unwrap()
            .status,
        AgentStatus::Disabled
    );
    assert_eq!(
        cached
            .agent_by_client_id(bot.id)
            .await
            .unwrap()
            .unwrap()
            .status,
        AgentStatus::Disabled
    );

    // Spending updates the cached usage; it never goes backwards.
    let read = cached.mandate(m.tenant_id, m.id).await.unwrap().unwrap();
    assert_eq!(read.usage.calls, 0);
    let unlimited = Budgets::default();
    cached
        .spend(m.tenant_id, m.id, 2, 30, &unlimited)
        .await
        .unwrap()
        .unwrap();
    let read = cached.mandate(m.tenant_id, m.id).await.unwrap().unwrap();
    assert_eq!((read.usage.calls, read.usage.amount), (2, 30));
    assert_eq!(
        inner
            .mandate(m.tenant_id, m.id)
            .await
            .unwrap()
            .unwrap()
            .usage,
        read.usage,
        "the cached usage is the stored one"
    );

    // Ending the mandate through the cache: the next read says so.
    let ended = revoked(&read);
    cached.update_mandate(&ended, &[]).await.unwrap();
    let read = cached.mandate(m.tenant_id, m.id).await.unwrap().unwrap();
    assert_eq!(read.status, MandateStatus::Revoked);

    // A refused write (stale version) also evicts: the caller's retry reads the truth.
    let mut stale = m.clone();
    stale.version += 1;
    assert!(cached.update_mandate(&stale, &[]).await.is_err());
    assert_eq!(
        cached
            .mandate(m.tenant_id, m.id)
            .await
            .unwrap()
            .unwrap()
            .version,
        ended.version
    );
}

pub async fn cache_keeps_tenants_apart(inner: Arc<dyn Store>) {
    let m = activated_mandate(&*inner).await;
    let other = tenant(&*inner, "other").await;
    let cached = CachedStore::with_ttl(inner.clone(), LONG);
    assert!(
        cached
            .agent(m.tenant_id, m.terms.agent_id)
            .await
            .unwrap()
            .is_some()
    );
    assert!(cached.mandate(m.tenant_id, m.id).await.unwrap().is_some());
    // Now in memory: another tenant still does not find them.
    assert!(
        cached
            .agent(other, m.terms.agent_id)
            .await
            .unwrap()
            .is_none()
    );
    assert!(cached.mandate(other, m.id).await.unwrap().is_none());
}

pub async fn cache_counts_catalog_changes(inner: Arc<dyn Store>) {
    let a = tenant(&*inner, "a").await;
    let cached = CachedStore::with_ttl(inner.clone(), LONG);
    let g0 = cached.catalog_generation();
    let server = ToolServer {
        id: ToolServerId::generate(),
        tenant_id: a,
        name: "files".into(),
        transport: ToolServerTransport::McpHttp {
            url: "http://127.0.0.1:9/mcp".into(),
        },
        credential_ref: None,
        step_up: false,
        created_at: t0(),
    };
    cached.create_tool_server(&server).await.unwrap();
    let g1 = cached.catalog_generation();
    assert_ne!(g0, g1, "a new tool server changes the generation");
    let mut tool = Tool {
        id: ToolId::generate(),
        tenant_id: a,
        server_id: server.id,
        name: "read".into(),
        description: String::new(),
        input_schema: serde_json::Value::Null,
        annotations: ToolAnnotations::default(),
        risk_tier: RiskTier::Read,
        tags: BTreeSet::new(),
        data_class: DataClass::Internal,
        amount_argument: None,
        compensation: None,
        created_at: t0(),
    };
    cached.create_tool(&tool).await.unwrap();
    let g2 = cached.catalog_generation();
    assert_ne!(g1, g2);
    tool.risk_tier = RiskTier::HighImpact;
    cached.update_tool(&tool).await.unwrap();
    assert_ne!(g2, cached.catalog_generation());
    // Reads change nothing.
    let g3 = cached.catalog_generation();
    cached.tool(a, tool.id).await.unwrap();
    assert_eq!(g3, cached.catalog_generation());
}

/// A revocation written through this replica wakes its feeds without a database
/// channel (SQLite has none): the revocation list catches up at once, not at the poll.
pub async fn cache_wakes_feeds_on_local_revocations(inner: Arc<dyn Store>) {
    let m = activated_mandate(&*inner).await;
    let cached = CachedStore::with_ttl(inner.clone(), LONG);
    let mut feed = cached
        .revocation_feed()
        .await
        .unwrap()
        .expect("the cache always has a feed");
    let ended = revoked(&m);
    cached.update_mandate(&ended, &[]).await.unwrap();
    // A bound on the wait, not a sleep: the wake-up is already due.
    tokio::time::timeout(StdDuration::from_secs(10), feed.next())
        .await
        .expect("woken by the local revocation")
        .unwrap();
}
