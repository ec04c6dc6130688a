//! [`LogCapture`]: what a `tracing` subscriber writes, for tests that read the log.

use std::{
    io::Write,
    sync::{Arc, Mutex},
};

/// Everything written to it, shared by its clones. Give a subscriber `move || capture.clone()`
/// as its writer (`tracing_subscriber::fmt().with_writer(..)`), then read [`LogCapture::text`].
#[derive(Debug, Clone, Default)]
pub struct LogCapture(Arc<Mutex<Vec<u8>>>);

impl LogCapture {
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
