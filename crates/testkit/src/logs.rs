//! [`LogCapture`]: what a `tracing` subscriber writes, for tests that read the log.

use std::{
    io::Write,
    sync::{Arc, Mutex},
};

/// Everything written to it, shared by its clones: [`install`](LogCapture::install) a plain-text
/// subscriber that writes here (or give your own `move || capture.clone()` as its writer), then
/// read [`LogCapture::text`].
#[derive(Debug, Clone, Default)]
pub struct LogCapture(Arc<Mutex<Vec<u8>>>);

impl LogCapture {
    /// Installs, as this thread's default until the guard drops, a plain-text `fmt` subscriber
    /// (no colours) writing events at `level` and above into this capture.
    ///
    /// Tests running beside this one may reach the same call sites with no subscriber; one that
    /// was registering a call site while this subscriber was installed could leave it cached as
    /// "never enabled", so the call sites' interest is recomputed with this subscriber known.
    pub fn install(&self, level: tracing::Level) -> tracing::subscriber::DefaultGuard {
        let writer = self.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_max_level(level)
            .with_ansi(false)
            .finish();
        let guard = tracing::subscriber::set_default(subscriber);
        tracing::callsite::rebuild_interest_cache();
        guard
    }

    /// Everything written so far.
    ///
    /// # Panics
    ///
    /// When what was written is not UTF-8 (formatters write text).
    pub fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).expect("log lines are UTF-8")
    }
}

impl Write for LogCapture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
