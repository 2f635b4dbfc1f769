//! longhaul's HTTP API: an axum Router over JobService, auth, error mapping, the OpenAPI spec.
