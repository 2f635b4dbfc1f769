//! longhaul's single-machine adapters: SQLite JobStore, filesystem BlobStore with signed URLs, engine-backed Orchestrator.
