//! Progress bars for long hashing work, on stderr.
//!
//! The bar is hidden when stderr is not a terminal, so logs and scripts
//! see no control sequences. Updates go through indicatif's rate-limited
//! drawing, so calling [`ProgressBar::set_position`] once per 256 KiB chunk
//! costs next to nothing next to hashing the chunk.
//!
//! This module must never write to stdout: stdout carries the command's
//! result (key ids, verdicts) for scripts.

use std::io::IsTerminal as _;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A byte-counting bar for hashing `len` bytes of `label`.
pub fn bytes_bar(len: u64, label: &str) -> ProgressBar {
    let target = if std::io::stderr().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let bar = ProgressBar::with_draw_target(Some(len), target);
    // The template is a constant; if it ever failed to parse, a plain bar
    // is still better than failing the command.
    let style = ProgressStyle::with_template(
        // wide_bar takes what the terminal has left, so the line never
        // wraps (a wrapped bar leaves debris when it redraws).
        "{msg} [{wide_bar}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
    )
    .map(|s| s.progress_chars("=> "))
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_message(label.to_string());
    bar
}
