//! Reading what is left of a request body before answering, so that the
//! caller reads the answer.
//!
//! Many answers come before the body is read (401, 403, a bad identifier
//! in the path, a body declared over 64 KiB, routes that take no body) or
//! while it is read (413). Closing a connection whose unread bytes sit in
//! the kernel's receive buffer sends a TCP reset, and a reset makes the
//! client drop the answer it had not read yet: the contract's 413 would
//! reach the caller as "connection reset". [`drain_unread_body`] therefore
//! reads and discards the rest of the body after the handler answered,
//! within [`DRAIN_BYTES_MAX`] and [`DRAIN_WAIT`].

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderMap};
use axum::middleware::Next;
use axum::response::Response;
use futures::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;

/// Most bytes discarded after an answer: a client that sent a little over
/// the 64 KiB limit, or a body to a route that takes none, reads its answer;
/// for anything larger, closing costs less than reading.
pub const DRAIN_BYTES_MAX: usize = 1024 * 1024;

/// Longest wait for the rest of a body after the answer is ready. The
/// answer is sent after it either way.
pub const DRAIN_WAIT: Duration = Duration::from_secs(1);

/// Middleware: lends the handler the body through a shared handle, then
/// discards what the handler left unread.
pub async fn drain_unread_body(request: Request, next: Next) -> Response {
    if !worth_draining(request.headers()) {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let shared = Arc::new(Mutex::new(body.into_data_stream()));
    let lent = futures::stream::unfold(shared.clone(), |stream| async move {
        let chunk = stream.lock().await.next().await?;
        Some((chunk, stream))
    });
    let response = next.run(Request::from_parts(parts, Body::from_stream(lent))).await;
    let _ = tokio::time::timeout(DRAIN_WAIT, discard(&shared)).await;
    response
}

async fn discard(shared: &Mutex<axum::body::BodyDataStream>) {
    let mut stream = shared.lock().await;
    let mut discarded = 0;
    while let Some(Ok(chunk)) = stream.next().await {
        discarded += chunk.len();
        if discarded > DRAIN_BYTES_MAX {
            return;
        }
    }
}

/// A body declared larger than the drain bound is not read; nor is one the
/// client waits to be asked for (`Expect: 100-continue`): not reading it
/// keeps the client from sending it at all.
fn worth_draining(headers: &HeaderMap) -> bool {
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    let has_body = declared != Some(0) && (declared.is_some() || headers.contains_key(header::TRANSFER_ENCODING));
    has_body && declared.is_none_or(|len| len <= DRAIN_BYTES_MAX) && !headers.contains_key(header::EXPECT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn only_bodies_within_the_bound_are_drained() {
        let with = |pairs: &[(header::HeaderName, &'static str)]| {
            let mut headers = HeaderMap::new();
            for (name, value) in pairs {
                headers.insert(name.clone(), HeaderValue::from_static(value));
            }
            worth_draining(&headers)
        };
        assert!(!with(&[]));
        assert!(!with(&[(header::CONTENT_LENGTH, "0")]));
        assert!(with(&[(header::CONTENT_LENGTH, "70000")]));
        assert!(with(&[(header::TRANSFER_ENCODING, "chunked")]));
        assert!(!with(&[(header::CONTENT_LENGTH, "2000000")]));
        assert!(!with(&[(header::CONTENT_LENGTH, "10"), (header::EXPECT, "100-continue")]));
    }
}
