//! HTTP/1.1 upgrade parsing and responses.
