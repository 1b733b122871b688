//! HTTP handlers, one module per resource and one file per action where
//! an action is more than a few lines. Handlers stay thin: extract and parse
//! the input, check the caller's role, call `db/`, `storage/` and the pure
//! modules, and return `AppResult<T>`.

pub mod audit;
pub mod catalogue;
pub mod device;
pub mod health;
pub mod images;
pub mod owner;
pub mod privacy;
pub mod release;
pub mod repair;
pub mod rollout;
pub mod tokens;
pub mod trust;
