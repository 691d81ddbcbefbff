//! The gateway: request lifecycle, auth, relay, settlement, admin API.
