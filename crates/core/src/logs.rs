//! Logging, and the recent log lines of each model.
//!
//! [`init`] sends the log to stderr (filtered by `RUST_LOG`, info by default)
//! and keeps the last lines about each model in memory: an event belongs to a
//! model when it has a `model` field, or when it happens inside a span with
//! one. A failed load's tile shows the lines of that load ([`mark`] before,
//! [`since`] after). The lines are the process's, like the log itself, so
//! they live in one process-wide book.

use std::collections::{HashMap, VecDeque};
use std::fmt::{self, Write as _};
use std::sync::{LazyLock, Mutex, MutexGuard};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::{Context, SubscriberExt as _};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer};

/// The lines kept per model, newest last.
pub const LINES_PER_MODEL: usize = 50;
/// The models whose lines are kept; the one logged least recently goes first.
const MODELS_KEPT: usize = 64;

/// Logs to stderr and keeps each model's recent lines. `RUST_LOG` filters
/// stderr (default: info); the kept lines are info and above whatever it says.
/// Does nothing when a logger is already installed.
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_filter(filter);
    // Below info, the model lines want nothing: left unfiltered, their layer
    // would switch on every debug and trace call site.
    let _ = tracing_subscriber::registry()
        .with(stderr)
        .with(layer().with_filter(LevelFilter::INFO))
        .try_init();
}

/// The layer that keeps each model's recent lines, for a logger of one's own
/// (tests install it alone).
pub fn layer() -> ModelLines {
    ModelLines
}

/// Where the book is now: lines logged after this are [`since`] it.
pub fn mark() -> u64 {
    book().next
}

/// The lines about `model` logged after `mark`, oldest first.
pub fn since(model: &str, mark: u64) -> Vec<String> {
    book()
        .models
        .get(model)
        .map(|lines| {
            lines
                .iter()
                .filter(|(n, _)| *n >= mark)
                .map(|(_, line)| line.clone())
                .collect()
        })
        .unwrap_or_default()
}

#[derive(Debug, Default)]
struct Book {
    /// The number the next line gets.
    next: u64,
    models: HashMap<String, VecDeque<(u64, String)>>,
}

impl Book {
    fn add(&mut self, model: String, line: String) {
        let n = self.next;
        self.next += 1;
        if !self.models.contains_key(&model) && self.models.len() >= MODELS_KEPT {
            let quietest = self
                .models
                .iter()
                .min_by_key(|(_, lines)| lines.back().map_or(0, |(n, _)| *n))
                .map(|(name, _)| name.clone());
            if let Some(name) = quietest {
                self.models.remove(&name);
            }
        }
        let lines = self.models.entry(model).or_default();
        if lines.len() == LINES_PER_MODEL {
            lines.pop_front();
        }
        lines.push_back((n, line));
    }
}

static BOOK: LazyLock<Mutex<Book>> = LazyLock::new(Mutex::default);

fn book() -> MutexGuard<'static, Book> {
    BOOK.lock().unwrap_or_else(|p| p.into_inner())
}

/// See [`layer`].
#[derive(Debug, Clone, Copy)]
pub struct ModelLines;

/// The model a span is about.
struct SpanModel(String);

impl<S> Layer<S> for ModelLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        if let (Some(model), Some(span)) = (fields.model, ctx.span(id)) {
            span.extensions_mut().insert(SpanModel(model));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let level = *event.metadata().level();
        if level > Level::INFO {
            return;
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        // The event's own `model`, else the nearest span's.
        let model = fields.model.take().or_else(|| {
            ctx.event_scope(event)?
                .find_map(|span| span.extensions().get::<SpanModel>().map(|m| m.0.clone()))
        });
        if let Some(model) = model {
            let line = format!("{level} {}{}", fields.message, fields.rest);
            book().add(model, line);
        }
    }
}

/// An event's message, its `model`, and its other fields as ` key=value`.
#[derive(Debug, Default)]
struct Fields {
    message: String,
    model: Option<String>,
    rest: String,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "message" => self.message = value.to_string(),
            "model" => self.model = Some(value.to_string()),
            name => {
                let _ = write!(self.rest, " {name}={value}");
            }
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        match field.name() {
            "message" => self.message = format!("{value:?}"),
            "model" => self.model = Some(format!("{value:?}")),
            name => {
                let _ = write!(self.rest, " {name}={value:?}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_layer(body: impl FnOnce()) {
        let subscriber = tracing_subscriber::registry().with(layer());
        tracing::subscriber::with_default(subscriber, body);
    }

    #[test]
    fn lines_go_to_the_model_of_the_event_or_of_its_span() {
        let mark = mark();
        with_layer(|| {
            tracing::info!(model = "logs-a", dir = "/m/a", "loading");
            let span = tracing::info_span!("load", model = %"logs-b");
            let _in = span.enter();
            tracing::warn!(error = "bad config.json", "cannot load the model");
            tracing::info!(model = "logs-a", "its own model wins over the span's");
            tracing::debug!("below info: not kept");
        });
        assert_eq!(
            since("logs-a", mark),
            [
                "INFO loading dir=/m/a",
                "INFO its own model wins over the span's",
            ]
        );
        assert_eq!(
            since("logs-b", mark),
            ["WARN cannot load the model error=bad config.json"]
        );
    }

    #[test]
    fn a_mark_leaves_out_older_lines_and_each_model_keeps_its_last_lines() {
        with_layer(|| {
            tracing::info!(model = "logs-c", "before");
            let mark = mark();
            for i in 0..LINES_PER_MODEL + 5 {
                tracing::info!(model = "logs-c", i, "after");
            }
            let lines = since("logs-c", mark);
            assert_eq!(lines.len(), LINES_PER_MODEL);
            assert_eq!(lines[0], "INFO after i=5");
            assert!(!lines.iter().any(|l| l.contains("before")));
        });
    }

    #[test]
    fn the_book_forgets_the_quietest_model_first() {
        let mut book = Book::default();
        for i in 0..MODELS_KEPT {
            book.add(format!("m{i}"), "line".into());
        }
        book.add("m0".into(), "again".into());
        book.add("new".into(), "line".into());
        assert_eq!(book.models.len(), MODELS_KEPT);
        assert!(book.models.contains_key("m0"), "m0 logged recently");
        assert!(!book.models.contains_key("m1"), "m1 was the quietest");
    }
}
