//! Server-sent events from a generation. Dropping the stream (the client hung
//! up) drops the [`Generation`], which cancels it before its next step. While
//! nothing else is sent (the request waits in the queue, or its prompt is
//! computed) a comment goes out every `keep_alive`, so proxies and clients'
//! read timeouts do not cut the stream.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use orchard_core::{CoreError, Generation, Output};

/// What the encoder is asked to turn into events.
#[derive(Debug)]
pub enum Step {
    Output(Output),
    /// Generation failed after the response began.
    Error(CoreError),
    /// The generation's stream has ended.
    End,
}

/// The longest silence on a stream before a keep-alive comment.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Streams `generation`, each step turned into events by `encode`, with a
/// `: keep-alive` comment after each `keep_alive` of silence.
pub fn stream<E>(
    generation: Generation,
    keep_alive: Duration,
    encode: E,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>>
where
    E: FnMut(Step) -> Vec<Event> + Send + 'static,
{
    let state = (Some(generation), encode, VecDeque::<Event>::new());
    let events = futures_util::stream::unfold(
        state,
        |(mut generation, mut encode, mut pending)| async move {
            loop {
                if let Some(event) = pending.pop_front() {
                    return Some((Ok(event), (generation, encode, pending)));
                }
                let current = generation.as_mut()?;
                match current.next().await {
                    Some(Ok(output)) => pending.extend(encode(Step::Output(output))),
                    Some(Err(error)) => {
                        pending.extend(encode(Step::Error(error)));
                        pending.extend(encode(Step::End));
                        generation = None;
                    }
                    None => {
                        pending.extend(encode(Step::End));
                        generation = None;
                    }
                }
            }
        },
    );
    Sse::new(events).keep_alive(KeepAlive::new().interval(keep_alive).text("keep-alive"))
}
