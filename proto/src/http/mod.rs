//! HTTP/1.1 upgrade parsing and responses.
//!
//! Just enough HTTP for the Moose line: parse one request head (incrementally, with hard
//! limits), recognise and check an RFC 6455 upgrade, read a query parameter, and write the
//! `101` or a complete short response. Bodies are never read; every non-101 response says
//! `Connection: close`.

mod query;
mod request;
mod response;
mod upgrade;

pub use query::query_param;
pub use request::{MAX_HEAD_BYTES, MAX_HEADERS, Parse, Request, RequestError, parse_request};
pub use response::{Status, write_response, write_switching_protocols};
pub use upgrade::{Upgrade, UpgradeError, WEBSOCKET_GUID, accept_key};
