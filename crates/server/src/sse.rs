//! Server-sent events from a generation. Dropping the stream (the client hung
//! up) drops the [`Generation`], which cancels it before its next step.

use std::collections::VecDeque;
use std::convert::Infallible;

use axum::response::sse::{Event, Sse};
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

/// Streams `generation`, each step turned into events by `encode`.
pub fn stream<E>(
    generation: Generation,
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
    Sse::new(events)
}
