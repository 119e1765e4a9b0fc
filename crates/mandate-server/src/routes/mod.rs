pub mod audit;
pub mod authzen;
pub mod catalog;
pub mod directory;
pub mod held;
pub mod mandates;
pub mod oauth;
pub mod ops;
pub mod policies;
pub mod register;
pub mod reviews;
pub mod secrets;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// One page of a listing.
#[derive(Debug, Serialize, ToSchema)]
pub struct PageBody<T: ToSchema> {
    pub items: Vec<T>,
    /// Pass as `after` to get the next page; null on the last page.
    pub next: Option<String>,
}

impl<T: ToSchema> From<mandate_store::Page<T>> for PageBody<T> {
    fn from(page: mandate_store::Page<T>) -> Self {
        PageBody {
            items: page.items,
            next: page.next.map(|c| c.0),
        }
    }
}

/// Paging parameters shared by every listing.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct Paging {
    /// The `next` value of the previous page.
    pub after: Option<String>,
    /// Items per page, 1 to 500 (default 50).
    pub limit: Option<u32>,
}

impl Paging {
    /// The page asked for. A cursor must be an id of the listing's kind (`I`): the
    /// only cursors this API hands out.
    pub fn request<I: std::str::FromStr>(
        self,
    ) -> Result<mandate_store::PageRequest, crate::Problem> {
        if self
            .after
            .as_deref()
            .is_some_and(|a| a.parse::<I>().is_err())
        {
            return Err(crate::Problem::bad_request(
                "`after` is not a cursor of this listing: pass the `next` of the previous page",
            ));
        }
        mandate_store::PageRequest::new(self.after, self.limit)
            .map_err(|e| crate::Problem::bad_request(e.to_string()))
    }
}

/// A bearer token issued once: keep `token`, it is never shown again.
#[derive(Debug, Serialize, ToSchema)]
pub struct IssuedTokenBody {
    pub id: mandate_types::ApiTokenId,
    pub token: String,
    pub label: String,
}

impl From<mandate_core::IssuedToken> for IssuedTokenBody {
    fn from(issued: mandate_core::IssuedToken) -> Self {
        IssuedTokenBody {
            id: issued.token.id,
            token: issued.secret.expose().clone(),
            label: issued.token.label,
        }
    }
}

/// The label of a new token.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    pub label: String,
}
