//! The service's errors: each maps to one API error code (DESIGN.md).

use crate::ports::{BlobError, StoreError};

/// Errors the service returns; each maps to one API error code.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{message}")]
    TooManyRequests {
        message: String,
        retry_after_seconds: u32,
    },
    #[error("{message}")]
    Unavailable {
        message: String,
        retry_after_seconds: u32,
    },
    #[error("{0}")]
    Internal(String),
}

impl ServiceError {
    /// The API error code (DESIGN.md).
    pub fn code(&self) -> &'static str {
        match self {
            ServiceError::BadRequest(_) => "bad_request",
            ServiceError::NotFound(_) => "not_found",
            ServiceError::Conflict(_) => "conflict",
            ServiceError::PayloadTooLarge(_) => "payload_too_large",
            ServiceError::TooManyRequests { .. } => "too_many_requests",
            ServiceError::Unavailable { .. } => "unavailable",
            ServiceError::Internal(_) => "internal",
        }
    }

    pub(crate) fn job_not_found(job_id: &str) -> ServiceError {
        ServiceError::NotFound(format!("no job {job_id}"))
    }
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(m) => ServiceError::Unavailable {
                message: format!("the job store cannot take requests now ({m}); try again"),
                retry_after_seconds: 5,
            },
            StoreError::Other(m) => ServiceError::Internal(m),
        }
    }
}

impl From<BlobError> for ServiceError {
    fn from(e: BlobError) -> Self {
        match e {
            BlobError::Unavailable(m) => ServiceError::Unavailable {
                message: format!("file storage cannot take requests now ({m}); try again"),
                retry_after_seconds: 5,
            },
            BlobError::InvalidKey { .. } | BlobError::InvalidRange { .. } => {
                ServiceError::BadRequest(e.to_string())
            }
            BlobError::NotFound(k) => ServiceError::NotFound(format!("no object {k}")),
            BlobError::Other(m) => ServiceError::Internal(m),
        }
    }
}
