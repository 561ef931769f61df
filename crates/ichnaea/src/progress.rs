//! Progress of the long commands (drain, import, dump, seed-*, datamap) on a
//! terminal: a bar when the amount of work is known, a spinner with a count
//! otherwise. Nothing is drawn when stderr is not a terminal (scripts, logs);
//! every command still ends with its one-line summary on stdout.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// One command's progress display; cleared when dropped.
pub struct Progress(ProgressBar);

impl Progress {
    /// A bar over `total` units of work named `unit` (e.g. `stations`).
    pub fn bar(prefix: &str, total: u64, unit: &str) -> Progress {
        let bar = ProgressBar::new(total);
        let template = format!(
            "{{prefix}} [{{elapsed_precise}}] {{wide_bar}} {{human_pos}}/{{human_len}} {unit} ({{eta}} left) {{msg}}"
        );
        if let Ok(style) = ProgressStyle::with_template(&template) {
            bar.set_style(style);
        }
        bar.set_prefix(prefix.to_string());
        Progress(bar)
    }

    /// A bar over the bytes of a file being read.
    pub fn bytes(prefix: &str, total: u64) -> Progress {
        let bar = ProgressBar::new(total);
        if let Ok(style) = ProgressStyle::with_template(
            "{prefix} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} ({eta} left) {msg}",
        ) {
            bar.set_style(style);
        }
        bar.set_prefix(prefix.to_string());
        Progress(bar)
    }

    /// A spinner for work of unknown size; `set_message` says how far it is.
    pub fn spinner(prefix: &str) -> Progress {
        let bar = ProgressBar::new_spinner();
        if let Ok(style) =
            ProgressStyle::with_template("{prefix} [{elapsed_precise}] {spinner} {msg}")
        {
            bar.set_style(style);
        }
        bar.set_prefix(prefix.to_string());
        bar.enable_steady_tick(Duration::from_millis(200));
        Progress(bar)
    }

    /// Units done so far.
    pub fn set_position(&self, done: u64) {
        self.0.set_position(done);
    }

    /// The text after the bar or spinner.
    pub fn set_message(&self, message: impl Into<std::borrow::Cow<'static, str>>) {
        self.0.set_message(message);
    }

    /// `reader`, advancing the bar by the bytes read from it.
    pub fn wrap_read<R: std::io::Read>(&self, reader: R) -> indicatif::ProgressBarIter<R> {
        self.0.wrap_read(reader)
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.0.finish_and_clear();
    }
}
