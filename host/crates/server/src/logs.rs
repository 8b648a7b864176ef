//! The log lines of each pipeline, for `…/logs` and the dashboard: a
//! tracing layer keeps the events that happen inside a pipeline's span
//! (`session`, `pipeline`, `replay`, `verify`; field `name` or `pipeline`) in a
//! bounded ring per pipeline, masked, and passes them to followers.

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::sync::{Arc, LazyLock, Mutex};

use serde::Serialize;
use tokio::sync::broadcast;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

/// Lines kept per pipeline.
const KEPT: usize = 2000;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct LogLine {
    pub at: String,
    pub level: String,
    pub message: String,
}

pub struct PipelineLog {
    lines: Mutex<VecDeque<LogLine>>,
    pub follow: broadcast::Sender<LogLine>,
    /// Transient failures retried (events with `event = "retry"`).
    pub retries: std::sync::atomic::AtomicU64,
}

impl PipelineLog {
    /// The last `limit` lines at `min` or more severe, oldest first.
    pub fn lines(&self, min: Level, limit: usize) -> Vec<LogLine> {
        let Ok(lines) = self.lines.lock() else {
            return Vec::new();
        };
        let mut out: Vec<LogLine> = lines
            .iter()
            .rev()
            .filter(|l| level_of(&l.level).is_some_and(|level| level <= min))
            .take(limit)
            .cloned()
            .collect();
        out.reverse();
        out
    }
}

/// Parses `error|warn|info|debug|trace`.
pub fn level_of(text: &str) -> Option<Level> {
    text.to_ascii_uppercase().parse().ok()
}

/// Every pipeline's log, by name.
static LOGS: LazyLock<Mutex<HashMap<String, Arc<PipelineLog>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// The log of pipeline `name` (made empty on first use).
pub fn pipeline_log(name: &str) -> Arc<PipelineLog> {
    let mut logs = LOGS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    logs.entry(name.to_string())
        .or_insert_with(|| {
            Arc::new(PipelineLog {
                lines: Mutex::new(VecDeque::new()),
                follow: broadcast::channel(256).0,
                retries: std::sync::atomic::AtomicU64::new(0),
            })
        })
        .clone()
}

/// The layer to install beside the process's own log output.
pub fn layer() -> PipelineLogLayer {
    PipelineLogLayer
}

pub struct PipelineLogLayer;

/// The pipeline a span belongs to, kept in its extensions.
struct OfPipeline(String);

#[derive(Default)]
struct Fields {
    message: String,
    rest: String,
    pipeline: Option<String>,
    event: Option<String>,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "message" => {
                let _ = write!(self.message, "{value:?}");
            }
            "name" | "pipeline" => self.pipeline = Some(format!("{value:?}")),
            name => {
                let _ = write!(self.rest, " {name}={value:?}");
            }
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "message" => self.message.push_str(value),
            "name" | "pipeline" => self.pipeline = Some(value.to_string()),
            "event" => self.event = Some(value.to_string()),
            name => {
                let _ = write!(self.rest, " {name}={value}");
            }
        }
    }
}

impl<S> tracing_subscriber::Layer<S> for PipelineLogLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: Context<'_, S>,
    ) {
        if !matches!(
            attrs.metadata().name(),
            "session" | "pipeline" | "replay" | "verify"
        ) {
            return;
        }
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        if let (Some(name), Some(span)) = (fields.pipeline, ctx.span(id)) {
            span.extensions_mut().insert(OfPipeline(name));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let Some(scope) = ctx.event_scope(event) else {
            return;
        };
        let Some(name) = scope
            .into_iter()
            .find_map(|span| span.extensions().get::<OfPipeline>().map(|p| p.0.clone()))
        else {
            return;
        };
        let mut fields = Fields::default();
        event.record(&mut fields);
        let line = LogLine {
            at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            level: event.metadata().level().as_str().to_ascii_lowercase(),
            message: dmp_contract::mask_secrets(&format!("{}{}", fields.message, fields.rest)),
        };
        let log = pipeline_log(&name);
        if fields.event.as_deref() == Some("retry") {
            log.retries
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        if let Ok(mut lines) = log.lines.lock() {
            if lines.len() == KEPT {
                lines.pop_front();
            }
            lines.push_back(line.clone());
        }
        let _ = log.follow.send(line);
    }
}
