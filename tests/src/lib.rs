//! End-to-end tests across the Firmup crates live in `tests/`; this library is empty on purpose.
