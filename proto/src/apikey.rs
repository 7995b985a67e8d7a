//! Line apikeys: validation and constant-time lookup.
