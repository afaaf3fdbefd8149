//! The one error body of the API: a status and `{"error": "..."}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::read::ReadError;

/// An API error.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    /// 400: the request is wrong; the message names the parameter.
    pub fn bad_request(message: String) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message,
        }
    }
}

impl ApiError {
    /// 404: nothing by that name.
    pub fn not_found(message: String) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            message,
        }
    }

    /// 403: the caller may not do this (beyond their role: e.g. decide their own
    /// request).
    pub fn forbidden(message: String) -> Self {
        Self {
            status: StatusCode::FORBIDDEN,
            message,
        }
    }

    /// 409: the thing is not in a state that allows this.
    pub fn conflict(message: String) -> Self {
        Self {
            status: StatusCode::CONFLICT,
            message,
        }
    }

    /// 503: a write could not be recorded; the client may try again.
    pub fn unavailable(message: String) -> Self {
        tracing::error!(error = %message, "API write failed");
        Self {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message,
        }
    }
}

impl From<ReadError> for ApiError {
    /// 503: the store did not answer; the client may try again.
    fn from(err: ReadError) -> Self {
        tracing::error!(error = %err, "API read failed");
        Self {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: err.to_string(),
        }
    }
}

/// The body of every error answer.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[schema(as = Error)]
pub struct ErrorBody {
    /// What was wrong, naming the parameter or field and its value.
    pub error: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(ErrorBody { error: self.message })).into_response()
    }
}
