//! The console's Reviews page in-process: a person reviews the agents they own (not
//! others'), marks a finding through its form (CSRF checked, a bad status shown, the
//! mark kept), and revokes a mandate from the page; a bad window is shown, not a 500.

use axum::http::StatusCode;

use crate::console::{Browser, PASSWORD, location, with_password};
use crate::support::World;

#[tokio::test]
async fn reviews_page_marks_findings_and_revokes_through_forms() {
    let w = World::new().await;
    for h in [&w.alice, &w.bob] {
        with_password(&w, h).await;
    }
    let id = w.active().await;

    let mut alice = Browser::new(&w.api);
    alice.sign_in("alice@example.com", PASSWORD).await;
    let (r, page) = alice.get("/ui/reviews").await;
    assert_eq!(r.status, StatusCode::OK, "{page}");
    for shown in [
        "Access reviews",
        "travel-bot",
        "other-bot",
        "Book a flight to Lisbon",
        "unused_scope",
        "flights.search",
        "flights.book",
    ] {
        assert!(page.contains(shown), "{shown} in {page}");
    }
    let csrf = Browser::hidden(&page, "csrf");
    let finding = Browser::hidden(&page, "finding");
    assert!(finding.starts_with("fnd_"), "{finding}");

    // A forged token changes nothing; a bad status is shown; a good one is kept.
    let (r, _) = alice
        .post(
            "/ui/reviews/mark",
            &[
                ("csrf", "forged"),
                ("finding", &finding),
                ("status", "remediated"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let (r, page) = alice
        .post(
            "/ui/reviews/mark",
            &[
                ("csrf", &csrf),
                ("finding", &finding),
                ("status", "ignored"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(page.contains("role=\"alert\"") && page.contains("Choose acknowledged"));
    assert!(!page.contains("Marked "), "nothing marked yet: {page}");
    let (r, _) = alice
        .post(
            "/ui/reviews/mark",
            &[
                ("csrf", &csrf),
                ("finding", &finding),
                ("status", "accepted_risk"),
                ("comment", "<script>alert(1)</script> kept on purpose"),
                ("days", "30"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(location(&r), "/ui/reviews?days=30&done=marked");
    let (_, page) = alice.get("/ui/reviews?days=30&done=marked").await;
    assert!(page.contains("The finding is marked."), "{page}");
    assert!(
        page.contains("Marked <strong>accepted_risk</strong>"),
        "{page}"
    );
    assert!(
        !page.contains("<script>alert(1)</script>"),
        "escaped: {page}"
    );
    assert!(page.contains("&lt;script&gt;"), "{page}");
    // An unknown finding: nothing here.
    let (r, _) = alice
        .post(
            "/ui/reviews/mark",
            &[
                ("csrf", &csrf),
                ("finding", "fnd_nope"),
                ("status", "acknowledged"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // A bad window is shown as such.
    let (r, page) = alice.get("/ui/reviews?days=0").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(
        page.contains("role=\"alert\"") && page.contains("from 1 to 365"),
        "{page}"
    );

    // Bob owns no agent and sponsors none: nothing to review, nothing to revoke.
    let mut bob = Browser::new(&w.api);
    bob.sign_in("bob@example.com", PASSWORD).await;
    let (_, page) = bob.get("/ui/reviews").await;
    assert!(page.contains("No agents to review."), "{page}");
    let bob_csrf = bob.csrf().await;
    let (r, _) = bob
        .post(
            "/ui/reviews/revoke",
            &[("csrf", &bob_csrf), ("agent", &w.agent), ("mandate", &id)],
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(w.mandate(&id).await["status"], "active");

    // Alice revokes the mandate from her review.
    let (r, _) = alice
        .post(
            "/ui/reviews/revoke",
            &[
                ("csrf", &csrf),
                ("agent", &w.agent),
                ("mandate", &id),
                ("days", "30"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let m = w.mandate(&id).await;
    assert_eq!(m["status"], "revoked");
    assert_eq!(
        m["end_reason"],
        "revoked from an access review in the console"
    );
}
