//! The API's one error shape: `{"error": {"code", "message"}}`, with the headers each code
//! promises (WWW-Authenticate on 401, Retry-After on 429 and 503).

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use longhaul_jobs::ServiceError;
use serde::Serialize;
use utoipa::ToSchema;

/// The body of every error response.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// bad_request, unauthorized, not_found, conflict, payload_too_large, too_many_requests,
    /// unavailable, internal.
    pub code: String,
    /// What went wrong, in a sentence.
    pub message: String,
}

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub retry_after: Option<u32>,
    /// For 401: whether a token was presented (then `error="invalid_token"`).
    pub token_given: bool,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
            token_given: false,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn unauthorized(message: impl Into<String>, token_given: bool) -> ApiError {
        ApiError {
            token_given,
            ..ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
        }
    }

    pub fn payload_too_large(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", message)
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        let message = e.to_string();
        match e {
            ServiceError::BadRequest(_) => ApiError::bad_request(message),
            ServiceError::NotFound(_) => ApiError::not_found(message),
            ServiceError::Conflict(_) => ApiError::new(StatusCode::CONFLICT, "conflict", message),
            ServiceError::PayloadTooLarge(_) => ApiError::payload_too_large(message),
            ServiceError::TooManyRequests {
                retry_after_seconds,
                ..
            } => ApiError {
                retry_after: Some(retry_after_seconds),
                ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, "too_many_requests", message)
            },
            ServiceError::Unavailable {
                retry_after_seconds,
                ..
            } => {
                tracing::warn!(error = %message, "service unavailable");
                ApiError {
                    retry_after: Some(retry_after_seconds),
                    ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
                }
            }
            ServiceError::Internal(m) => {
                // Details go to the log, not to the client.
                tracing::error!(error = %m, "internal error");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "something went wrong on our side; try again",
                )
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_string(),
                message: self.message,
            },
        };
        let mut resp = (self.status, Json(body)).into_response();
        if let Some(s) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        if self.status == StatusCode::PAYLOAD_TOO_LARGE {
            // The rest of the body is never read: tell the client not to reuse the connection,
            // or its next request on it races the server closing it.
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            let v = if self.token_given {
                "Bearer error=\"invalid_token\""
            } else {
                "Bearer"
            };
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(v));
        }
        resp
    }
}
