//! Exit codes and the one-line error report.
//!
//! Commands return `anyhow::Result`. A verification verdict travels as a
//! [`Rejected`] inside the `anyhow::Error` and maps to exit code 1; anything
//! else is an input error, exit code 3 (clap handles usage errors, 2).
//! Keeping the marker explicit means no error can be mistaken for a verdict
//! by accident: only code that asked the engine for one can produce it.
//!
//! This module must never print more than one line per error, and never
//! print anything derived from key material.

use std::fmt;
use std::process::ExitCode;

/// Exit code of a rejected verification.
pub const EXIT_REJECTED: u8 = 1;
/// Exit code of an input error (bad file, bad key, refusal to overwrite).
pub const EXIT_INPUT: u8 = 3;

/// Marks an error as a verdict on an artifact (exit code 1): the engine's,
/// or a server's refusal of a publish.
#[derive(Debug)]
pub struct Rejected {
    /// Stable code (the engine's or the server's).
    pub code: String,
    /// What was wrong.
    pub message: String,
}

impl Rejected {
    /// A verdict of the verification engine.
    pub fn engine(err: &firmup_client::Error) -> Self {
        Rejected {
            code: err.code().to_string(),
            message: err.to_string(),
        }
    }
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "REJECTED ({}): {}", self.code, self.message)
    }
}

impl std::error::Error for Rejected {}

/// Turns an engine error into either a verdict or an input error: I/O
/// failures say nothing about the artifact, everything else is a verdict.
pub fn verdict(err: firmup_client::Error) -> anyhow::Error {
    if err.code() == "io" {
        anyhow::Error::new(err)
    } else {
        anyhow::Error::new(Rejected::engine(&err))
    }
}

/// Prints the outcome of a command and chooses the exit code.
pub fn report(result: anyhow::Result<()>) -> ExitCode {
    let Err(err) = result else {
        return ExitCode::SUCCESS;
    };
    if let Some(rejected) = err.downcast_ref::<Rejected>() {
        // The verdict is the command's answer, like "OK: ...": stdout.
        println!("{}", one_line(&rejected.to_string()));
        return ExitCode::from(EXIT_REJECTED);
    }
    eprintln!("error: {}", one_line(&format!("{err:#}")));
    ExitCode::from(EXIT_INPUT)
}

/// Folds a message onto one line: parsers sometimes embed newlines, and a
/// log line per error is what operators grep for.
pub fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_are_not_verdicts() {
        let io = firmup_client::Error::io("reading", std::io::Error::other("boom"));
        assert!(verdict(io).downcast_ref::<Rejected>().is_none());
        let bad = firmup_client::Error::ImageTruncated {
            name: "fw.bin".into(),
            expected: 2,
            actual: 1,
        };
        let err = verdict(bad);
        let rejected = err.downcast_ref::<Rejected>().expect("a verdict");
        assert!(
            rejected
                .to_string()
                .starts_with("REJECTED (image_truncated): ")
        );
    }

    #[test]
    fn messages_fold_onto_one_line() {
        assert_eq!(one_line("a\n  b\tc "), "a b c");
    }
}
