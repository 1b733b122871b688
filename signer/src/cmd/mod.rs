//! One module per subcommand, each with an `Args` type (its flags and its
//! man-page text) and a `run` function.
//!
//! Commands must never verify trust themselves: they call
//! `firmup_client`'s engine and report what it says.

pub mod delegate;
pub mod keygen;
pub mod publish;
pub mod root;
pub mod sign;
pub mod verify;
