//! The route handlers, one file per area. Each takes an authenticated [`Call`] (or the bare
//! request, for the routes without an API key) and only the state it needs, and answers or
//! refuses with an [`ApiError`].
//!
//! [`Call`]: crate::http::call::Call
//! [`ApiError`]: crate::http::error::ApiError

pub(crate) mod connections;
pub(crate) mod history;
pub(crate) mod inbox;
pub(crate) mod ops;
pub(crate) mod publish;
