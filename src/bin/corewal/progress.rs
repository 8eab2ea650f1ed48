//! A one-line status on stderr while workloads run, shown only when stderr
//! is a terminal, so that logs and pipes stay clean.

use std::io::{IsTerminal, Write};

pub struct Progress {
    on: bool,
}

impl Progress {
    pub fn new() -> Progress {
        Progress {
            on: std::io::stderr().is_terminal(),
        }
    }

    /// Replaces the status line with `msg`.
    pub fn say(&self, msg: &str) {
        if self.on {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[K{msg}");
            let _ = err.flush();
        }
    }

    /// Erases the status line.
    pub fn clear(&self) {
        self.say("");
    }
}
