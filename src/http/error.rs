//! The one error shape of every REST answer, built from a domain `ErrorCode`.

use serde_json::{json, Value};
use signalgrid_actors::errors::ErrorCode;
use signalgrid_actors::ports::StoreError;

/// A REST failure: code (and so status), message, developer details.
#[derive(Debug)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    pub details: Value,
    /// Seconds, for `retry-after` (429 RATE_LIMITED, 503 CONNECT_RATE_LIMITED).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(code: ErrorCode) -> ApiError {
        ApiError { code, message: code.default_message().to_owned(), details: json!({}), retry_after: None }
    }

    pub fn details(mut self, details: Value) -> ApiError {
        self.details = details;
        self
    }

    pub fn message(mut self, message: impl Into<String>) -> ApiError {
        self.message = message.into();
        self
    }

    /// The body: `{"success": false, "error": {...}}`.
    pub fn body(&self, request_id: &str, timestamp: &str) -> Value {
        json!({
            "success": false,
            "error": {
                "code": self.code.as_str(),
                "message": self.message,
                "details": self.details,
                "timestamp": timestamp,
                "requestId": request_id,
            }
        })
    }
}

impl From<ErrorCode> for ApiError {
    fn from(code: ErrorCode) -> Self {
        ApiError::new(code)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "store call failed");
        match e {
            StoreError::Unavailable(_) => ApiError::new(ErrorCode::StoreUnavailable),
            StoreError::Other(_) => ApiError::new(ErrorCode::Internal),
        }
    }
}
