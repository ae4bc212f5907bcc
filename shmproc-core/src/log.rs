//! Lifecycle logging through `tracing`, and the one-line stderr set-up.
//!
//! Every line says which process wrote it: `[DEBUG/Process-1 4242] ...`,
//! as Python's `multiprocessing.log_to_stderr` prefixes `[DEBUG/Process-1]`.

use std::fmt;
use std::sync::OnceLock;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use crate::process::current_process;

static LEVEL: OnceLock<Level> = OnceLock::new();

struct ProcessFormat;

impl<S, N> FormatEvent<S, N> for ProcessFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let me = current_process();
        write!(writer, "[{}/{} {}] ", event.metadata().level(), me.name(), me.pid())?;
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

/// Sends shm's (and the program's) `tracing` events at `level` and above to
/// stderr, one line each, prefixed with the process name and pid. Children
/// started afterwards log the same way. Returns `false` if a global
/// subscriber was already installed (it is left in place).
pub fn log_to_stderr(level: Level) -> bool {
    let _ = LEVEL.set(level);
    let subscriber = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(level)
        .event_format(ProcessFormat)
        .finish();
    tracing::subscriber::set_global_default(subscriber).is_ok()
}

/// The level set by [`log_to_stderr`], encoded for a child.
pub(crate) fn level_code() -> Option<u8> {
    LEVEL.get().map(|l| match *l {
        Level::ERROR => 1,
        Level::WARN => 2,
        Level::INFO => 3,
        Level::DEBUG => 4,
        _ => 5,
    })
}

/// Sets up logging in a child whose parent called [`log_to_stderr`].
pub(crate) fn init_child_logging(code: u8) {
    let level = match code {
        1 => Level::ERROR,
        2 => Level::WARN,
        3 => Level::INFO,
        4 => Level::DEBUG,
        _ => Level::TRACE,
    };
    let _ = log_to_stderr(level);
}
