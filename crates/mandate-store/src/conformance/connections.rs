//! People's connections to upstream tool servers.

use super::*;
use crate::{ConnectionMeta, StoredConnection};

async fn server(store: &dyn Store, tenant_id: TenantId, name: &str) -> ToolServerId {
    let s = ToolServer {
        id: ToolServerId::generate(),
        tenant_id,
        name: name.into(),
        transport: ToolServerTransport::McpHttp {
            url: "http://127.0.0.1:9/mcp".into(),
        },
        credential_ref: Some("connection:calendar".into()),
        step_up: false,
        created_at: t0(),
    };
    store.create_tool_server(&s).await.unwrap();
    s.id
}

pub async fn connections_are_per_person_and_server_replaced_and_deleted(store: Arc<dyn Store>) {
    let a = tenant(&*store, "a").await;
    let b = tenant(&*store, "b").await;
    let (alice, bob, carol) = (
        human(a, "alice@a.example"),
        human(a, "bob@a.example"),
        human(b, "carol@b.example"),
    );
    for h in [&alice, &bob, &carol] {
        store.create_human(h).await.unwrap();
    }
    let cal = server(&*store, a, "cal").await;
    let other = server(&*store, b, "cal").await;
    let t1 = t0() + Duration::seconds(1);
    let conn = StoredConnection {
        tenant_id: a,
        human_id: alice.id,
        server_id: cal,
        provider: "calendar".into(),
        scope: "calendar.read".into(),
        sealed: "v1.k1.n.alice".into(),
        key_id: "k1".into(),
        connected_at: t0(),
        updated_at: t0(),
    };
    store.put_connection(&conn).await.unwrap();
    assert_eq!(
        store.connection(a, alice.id, cal).await.unwrap(),
        Some(conn.clone())
    );
    // Another person, another tenant: not found.
    assert_eq!(store.connection(a, bob.id, cal).await.unwrap(), None);
    assert_eq!(store.connection(b, alice.id, cal).await.unwrap(), None);
    // A person or server of another tenant cannot be connected.
    for ghost in [
        StoredConnection {
            human_id: carol.id,
            ..conn.clone()
        },
        StoredConnection {
            server_id: other,
            ..conn.clone()
        },
        StoredConnection {
            tenant_id: b,
            ..conn.clone()
        },
    ] {
        assert!(matches!(
            store.put_connection(&ghost).await,
            Err(StoreError::Missing { .. })
        ));
    }

    // Connecting again replaces it.
    let again = StoredConnection {
        sealed: "v1.k2.n.alice2".into(),
        key_id: "k2".into(),
        connected_at: t1,
        updated_at: t1,
        ..conn.clone()
    };
    store.put_connection(&again).await.unwrap();
    assert_eq!(
        store.connection(a, alice.id, cal).await.unwrap(),
        Some(again.clone())
    );

    // A listing is the person's own and carries no sealed form.
    store
        .put_connection(&StoredConnection {
            human_id: bob.id,
            sealed: "v1.k1.n.bob".into(),
            ..conn.clone()
        })
        .await
        .unwrap();
    let listed = store.list_connections(a, alice.id).await.unwrap();
    assert_eq!(listed, vec![ConnectionMeta::from(again.clone())]);
    assert!(
        store
            .list_connections(b, alice.id)
            .await
            .unwrap()
            .is_empty()
    );

    // Compare-and-swap: the stale form loses, the current one wins.
    let t2 = t1 + Duration::seconds(1);
    assert!(
        !store
            .replace_connection_sealed(&conn, "x", "k1", t2)
            .await
            .unwrap()
    );
    assert!(
        store
            .replace_connection_sealed(&again, "v1.k2.n.fresh", "k2", t2)
            .await
            .unwrap()
    );
    let got = store.connection(a, alice.id, cal).await.unwrap().unwrap();
    assert_eq!(
        (got.sealed.as_str(), got.connected_at, got.updated_at),
        ("v1.k2.n.fresh", t1, t2)
    );

    // Deleting returns what was deleted, once; Bob's stays.
    let gone = store
        .delete_connection(a, alice.id, cal)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(gone.sealed, "v1.k2.n.fresh");
    assert_eq!(
        store.delete_connection(a, alice.id, cal).await.unwrap(),
        None
    );
    assert_eq!(store.connection(a, alice.id, cal).await.unwrap(), None);
    assert!(
        !store
            .replace_connection_sealed(&gone, "y", "k2", t2)
            .await
            .unwrap()
    );
    assert!(store.connection(a, bob.id, cal).await.unwrap().is_some());
    assert_eq!(store.delete_connection(b, bob.id, cal).await.unwrap(), None);
}
