//! The API's error type and its XML-RPC fault codes (HAAS-API.md §2.7). Every failure a
//! method can report is an [`ApiError`]: an error type (which fixes the fault code) and a
//! message that says what failed, on which object, and what to do.

use std::fmt;

/// The error types of §2.7; each has one fault code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorType {
    ParseError,
    InvalidRequest,
    MethodNotFound,
    InvalidParams,
    AuthFailure,
    PermissionDenied,
    ParameterError,
    NotFound,
    InvalidStatus,
    Conflict,
    QuotaExceeded,
    ResourceExhausted,
    ResourceBusy,
    RateLimited,
    TooManyPendingRequests,
    InternalError,
    BackendError,
}

impl ErrorType {
    pub fn code(self) -> i32 {
        match self {
            ErrorType::ParseError => -32700,
            ErrorType::InvalidRequest => -32600,
            ErrorType::MethodNotFound => -32601,
            ErrorType::InvalidParams => -32602,
            ErrorType::AuthFailure => 100,
            ErrorType::PermissionDenied => 200,
            ErrorType::ParameterError => 300,
            ErrorType::NotFound => 400,
            ErrorType::InvalidStatus => 500,
            ErrorType::Conflict => 510,
            ErrorType::QuotaExceeded => 600,
            ErrorType::ResourceExhausted => 610,
            ErrorType::ResourceBusy => 700,
            ErrorType::RateLimited => 710,
            ErrorType::TooManyPendingRequests => 720,
            ErrorType::InternalError => 900,
            ErrorType::BackendError => 910,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorType::ParseError => "ParseError",
            ErrorType::InvalidRequest => "InvalidRequest",
            ErrorType::MethodNotFound => "MethodNotFound",
            ErrorType::InvalidParams => "InvalidParams",
            ErrorType::AuthFailure => "AuthFailure",
            ErrorType::PermissionDenied => "PermissionDenied",
            ErrorType::ParameterError => "ParameterError",
            ErrorType::NotFound => "NotFound",
            ErrorType::InvalidStatus => "InvalidStatus",
            ErrorType::Conflict => "Conflict",
            ErrorType::QuotaExceeded => "QuotaExceeded",
            ErrorType::ResourceExhausted => "ResourceExhausted",
            ErrorType::ResourceBusy => "ResourceBusy",
            ErrorType::RateLimited => "RateLimited",
            ErrorType::TooManyPendingRequests => "TooManyPendingRequests",
            ErrorType::InternalError => "InternalError",
            ErrorType::BackendError => "BackendError",
        }
    }
}

/// A failed call: becomes `<fault>` with `faultString = "<ErrorType>: <message>"`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ApiError {
    pub kind: ErrorType,
    pub message: String,
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.as_str(), self.message)
    }
}

impl ApiError {
    pub fn new(kind: ErrorType, message: impl Into<String>) -> Self {
        ApiError {
            kind,
            message: message.into(),
        }
    }

    pub fn fault(&self) -> dxr::Fault {
        dxr::Fault::new(self.kind.code(), self.to_string())
    }
}

/// Shorthands: `fail(NotFound, "...")` reads like the contract's error tables.
pub fn fail<T>(kind: ErrorType, message: impl Into<String>) -> Result<T, ApiError> {
    Err(ApiError::new(kind, message))
}

impl From<crate::inventory::Error> for ApiError {
    fn from(e: crate::inventory::Error) -> Self {
        tracing::error!(error = %e, "inventory error in an API call");
        ApiError::new(
            ErrorType::InternalError,
            "the inventory could not complete the call; retry later, and tell the operator if it persists",
        )
    }
}
