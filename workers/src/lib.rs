//! longhaul's workflow step handlers as plain async functions over the ports.
