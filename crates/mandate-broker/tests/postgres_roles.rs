#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails loudly"
)]
//! Per-mandate PostgreSQL roles against the local server (`MANDATE_TEST_POSTGRES_ADMIN_URL`,
//! default `postgres://postgres@127.0.0.1:5432/postgres`). Every run uses a role prefix
//! of its own and removes what it made.

use chrono::{DateTime, Duration, DurationRound as _, Utc};
use mandate_broker::postgres_roles::{PostgresRoles, RoleOptions};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection as _, PgConnection, PgPool};

const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

struct Fixture {
    admin: PgPool,
    roles: PostgresRoles,
    prefix: String,
    url: String,
}

async fn fixture() -> Fixture {
    let url =
        std::env::var("MANDATE_TEST_POSTGRES_ADMIN_URL").unwrap_or_else(|_| DEFAULT_URL.into());
    let admin = PgPoolOptions::new()
        .max_connections(2)
        .connect(&url)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {url} is needed for these tests: {e}"));
    // `t` + 8 hex digits + `_`: unique to this test, within the 10-byte prefix limit.
    // (The tail of a UUIDv7 is random; its head is the time.)
    let uuid = uuid::Uuid::now_v7().simple().to_string();
    let prefix = format!("t{}_", &uuid[24..]);
    let roles = PostgresRoles::new(
        admin.clone(),
        RoleOptions {
            prefix: prefix.clone(),
            connection_limit: Some(3),
        },
    )
    .unwrap();
    Fixture {
        admin,
        roles,
        prefix,
        url,
    }
}

impl Fixture {
    /// A NOLOGIN group role for memberships, named under this run's prefix.
    async fn group(&self, suffix: &str) -> String {
        let name = format!("{}{suffix}", self.prefix);
        sqlx::raw_sql(&format!("CREATE ROLE \"{name}\" NOLOGIN"))
            .execute(&self.admin)
            .await
            .unwrap();
        name
    }

    async fn roles_left(&self) -> Vec<String> {
        sqlx::query_scalar("SELECT rolname::text FROM pg_roles WHERE starts_with(rolname, $1)")
            .bind(&self.prefix)
            .fetch_all(&self.admin)
            .await
            .unwrap()
    }

    /// Drops every role of this run (mandate roles first, then groups).
    async fn cleanup(&self) {
        let mut names = self.roles_left().await;
        names.sort_by_key(|n| std::cmp::Reverse(n.len()));
        for name in names {
            let quoted = name.replace('"', "\"\"");
            let _ = sqlx::raw_sql(&format!("DROP ROLE IF EXISTS \"{quoted}\""))
                .execute(&self.admin)
                .await;
        }
    }

    async fn login(&self, user: &str, password: &str) -> Result<PgConnection, sqlx::Error> {
        let base: PgConnectOptions = self.url.parse().unwrap();
        PgConnection::connect_with(&base.username(user).password(password)).await
    }
}

fn in_an_hour() -> DateTime<Utc> {
    // PostgreSQL keeps microseconds.
    (Utc::now() + Duration::hours(1))
        .duration_trunc(Duration::microseconds(1))
        .unwrap()
}

#[tokio::test]
async fn a_role_lives_with_its_mandate() {
    let f = fixture().await;
    let readers = f.group("readers").await;
    let writers = f.group("writers").await;
    let mandate = format!("man_{}", uuid::Uuid::now_v7().simple());
    let until = in_an_hour();

    let cred = f
        .roles
        .create_for_mandate(&mandate, until, std::slice::from_ref(&readers))
        .await
        .unwrap();
    assert_eq!(cred.username, f.roles.role_name(&mandate).unwrap());
    assert!(
        cred.username
            .starts_with(&format!("{}{mandate}_", f.prefix))
    );
    assert_eq!(cred.valid_until, until);
    assert!(!format!("{cred:?}").contains(cred.password.expose()));

    let (can_login, valid_until, limit): (bool, Option<i64>, i32) = sqlx::query_as(
        "SELECT rolcanlogin, (extract(epoch FROM rolvaliduntil) * 1000000)::bigint, rolconnlimit
         FROM pg_roles WHERE rolname = $1",
    )
    .bind(&cred.username)
    .fetch_one(&f.admin)
    .await
    .unwrap();
    assert!(can_login);
    assert_eq!(valid_until, Some(until.timestamp_micros()));
    assert_eq!(limit, 3);
    let member: bool = sqlx::query_scalar("SELECT pg_has_role($1, $2, 'MEMBER')")
        .bind(&cred.username)
        .bind(&readers)
        .fetch_one(&f.admin)
        .await
        .unwrap();
    assert!(member);

    // One can connect as it.
    let mut session = f
        .login(&cred.username, cred.password.expose())
        .await
        .unwrap();
    let me: String = sqlx::query_scalar("SELECT current_user::text")
        .fetch_one(&mut session)
        .await
        .unwrap();
    assert_eq!(me, cred.username);

    // Again for the same mandate: a new password, the new expiry, memberships added.
    let later = until + Duration::hours(1);
    let again = f
        .roles
        .create_for_mandate(&mandate, later, std::slice::from_ref(&writers))
        .await
        .unwrap();
    assert_eq!(again.username, cred.username);
    assert_ne!(again.password.expose(), cred.password.expose());
    let (valid_until, in_readers, in_writers): (Option<i64>, bool, bool) =
        sqlx::query_as(
            "SELECT (extract(epoch FROM rolvaliduntil) * 1000000)::bigint, pg_has_role(rolname, $2, 'MEMBER'), pg_has_role(rolname, $3, 'MEMBER')
             FROM pg_roles WHERE rolname = $1",
        )
        .bind(&cred.username)
        .bind(&readers)
        .bind(&writers)
        .fetch_one(&f.admin)
        .await
        .unwrap();
    assert_eq!(valid_until, Some(later.timestamp_micros()));
    assert!(in_readers && in_writers);

    // The mandate ends: the open session is terminated and the role is gone.
    assert!(f.roles.drop_for_mandate(&mandate).await.unwrap());
    let after: Result<i32, _> = sqlx::query_scalar("SELECT 1").fetch_one(&mut session).await;
    assert!(after.is_err(), "the mandate's session survived its role");
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)")
            .bind(&cred.username)
            .fetch_one(&f.admin)
            .await
            .unwrap();
    assert!(!exists);
    assert!(
        f.login(&cred.username, again.password.expose())
            .await
            .is_err()
    );
    // Idempotent.
    assert!(!f.roles.drop_for_mandate(&mandate).await.unwrap());

    f.cleanup().await;
    assert!(f.roles_left().await.is_empty());
}

#[tokio::test]
async fn hostile_ids_and_role_names_inject_nothing() {
    let f = fixture().await;
    // A group whose name is itself hostile, quoted as an identifier.
    let odd_group = f.group("odd\"\" ; drop role postgres; --").await;
    let odd_group = odd_group.replace("\"\"", "\"");
    let hostile = [
        "man_x\"; DROP ROLE postgres; --",
        "man_x'; DROP ROLE postgres; --",
        "man_x$$; DROP ROLE postgres; $$",
        "MAN_X\\\\'",
        "ünïcødé",
        "man_x\0nul",
    ];
    for id in hostile {
        let cred = f
            .roles
            .create_for_mandate(id, in_an_hour(), std::slice::from_ref(&odd_group))
            .await
            .unwrap_or_else(|e| panic!("{id:?}: {e}"));
        assert!(
            cred.username
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        );
        let member: bool = sqlx::query_scalar("SELECT pg_has_role($1, $2, 'MEMBER')")
            .bind(&cred.username)
            .bind(&odd_group)
            .fetch_one(&f.admin)
            .await
            .unwrap();
        assert!(member, "{id:?}");
    }
    let postgres: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'postgres')")
            .fetch_one(&f.admin)
            .await
            .unwrap();
    assert!(postgres);
    // Every hostile id got its own role, and each is dropped by its id.
    assert_eq!(f.roles_left().await.len(), hostile.len() + 1);
    for id in hostile {
        assert!(f.roles.drop_for_mandate(id).await.unwrap(), "{id:?}");
    }
    assert_eq!(f.roles_left().await, std::slice::from_ref(&odd_group));

    // Membership in a role that does not exist fails cleanly and creates nothing.
    let err = f
        .roles
        .create_for_mandate("man_y", in_an_hour(), &[format!("{}missing", f.prefix)])
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("PostgreSQL refused to create role"),
        "{err}"
    );
    assert_eq!(f.roles_left().await, [odd_group]);
    // A name PostgreSQL would truncate is refused before any SQL runs.
    let err = f
        .roles
        .create_for_mandate("man_y", in_an_hour(), &["r".repeat(64)])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("is not a role name"), "{err}");

    f.cleanup().await;
    assert!(f.roles_left().await.is_empty());
}

#[tokio::test]
async fn concurrent_creates_for_one_mandate_make_one_role() {
    let f = fixture().await;
    let mandate = format!("man_{}", uuid::Uuid::now_v7().simple());
    let until = in_an_hour();
    let (a, b) = tokio::join!(
        f.roles.create_for_mandate(&mandate, until, &[]),
        f.roles.create_for_mandate(&mandate, until, &[]),
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.username, b.username);
    assert_eq!(f.roles_left().await, std::slice::from_ref(&a.username));
    // Dropping while another drop runs: one drops, the other finds nothing.
    let (x, y) = tokio::join!(
        f.roles.drop_for_mandate(&mandate),
        f.roles.drop_for_mandate(&mandate),
    );
    assert_eq!(
        usize::from(x.unwrap()) + usize::from(y.unwrap()),
        1,
        "exactly one drop finds the role"
    );
    f.cleanup().await;
    assert!(f.roles_left().await.is_empty());
}
