use mandate_domain::{LifecycleError, TermsError};
use mandate_store::{PageRequestError, StoreError};

/// Why a use case refused or failed. Each protocol maps these to its own shape in one
/// place (problem+json for the admin API).
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// No credential, or one that is unknown, expired or revoked.
    #[error("a valid bearer token is required")]
    Unauthenticated,
    /// The caller is known but may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// Nothing with this id in the caller's tenant (or the caller may not see it).
    #[error("{what} `{id}` was not found")]
    NotFound { what: &'static str, id: String },
    /// The request is well-formed JSON but its content is not acceptable.
    #[error("{detail}")]
    Invalid { detail: String },
    /// A unique key is taken.
    #[error("{0}")]
    Conflict(String),
    /// The lifecycle does not allow this change.
    #[error(transparent)]
    Lifecycle(#[from] LifecycleError),
    /// The mandate's expiry has passed.
    #[error("mandate `{0}` has expired")]
    Expired(String),
    /// A policy set that does not compile; the running set is unchanged.
    #[error(transparent)]
    PolicySet(#[from] mandate_policy::PolicySetError),
    /// The store cannot be reached; the operation did not happen.
    #[error("the store is unavailable")]
    Unavailable(String),
    /// Something that should never happen did; details are logged, not returned.
    #[error("internal error")]
    Internal(String),
}

impl CoreError {
    pub fn invalid(detail: impl Into<String>) -> Self {
        CoreError::Invalid {
            detail: detail.into(),
        }
    }

    pub fn not_found(what: &'static str, id: impl ToString) -> Self {
        CoreError::NotFound {
            what,
            id: id.to_string(),
        }
    }
}

impl From<StoreError> for CoreError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Conflict { what } => CoreError::Conflict(format!("{what} already exists")),
            StoreError::Missing { what } => CoreError::Invalid {
                detail: format!("{what} does not exist"),
            },
            StoreError::VersionConflict => {
                CoreError::Conflict("the record changed concurrently; retry".to_owned())
            }
            StoreError::Unavailable(detail) => CoreError::Unavailable(detail),
            StoreError::Corrupt(detail) => CoreError::Internal(detail),
        }
    }
}

impl From<TermsError> for CoreError {
    fn from(err: TermsError) -> Self {
        CoreError::Invalid {
            detail: err.to_string(),
        }
    }
}

impl From<PageRequestError> for CoreError {
    fn from(err: PageRequestError) -> Self {
        CoreError::Invalid {
            detail: err.to_string(),
        }
    }
}
