//! What one connection is doing, for the idle timeout: when a byte last crossed it, whether a
//! request has begun, and whether the server is still working on one (a handler running, a
//! response body waiting for its next piece) rather than waiting on the client (to send a
//! request body, or to read the response).
//!
//! [`Watched`] wraps the connection's stream and notes every read and write; [`Tracked`] wraps
//! request and response bodies and notes when they wait; [`Handling`] is held while a handler
//! runs.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http_body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The shared record of one connection.
#[derive(Debug)]
pub(super) struct Activity {
    epoch: Instant,
    /// Milliseconds from `epoch` to the last byte read or written.
    last: AtomicU64,
    /// Whether a request head has arrived.
    requested: AtomicBool,
    /// Handlers running plus response bodies waiting for the server.
    server_side: AtomicUsize,
    /// Request bodies waiting for the client.
    awaiting_client: AtomicUsize,
}

impl Activity {
    pub(super) fn new() -> Arc<Activity> {
        Arc::new(Activity {
            epoch: Instant::now(),
            last: AtomicU64::new(0),
            requested: AtomicBool::new(false),
            server_side: AtomicUsize::new(0),
            awaiting_client: AtomicUsize::new(0),
        })
    }

    fn touch(&self) {
        let ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(ms, Ordering::Relaxed);
    }

    /// When a byte last crossed the connection (or when it was opened).
    pub(super) fn last_traffic(&self) -> Instant {
        self.epoch + Duration::from_millis(self.last.load(Ordering::Relaxed))
    }

    /// Whether any request head has arrived on the connection.
    pub(super) fn requested(&self) -> bool {
        self.requested.load(Ordering::Relaxed)
    }

    /// Whether the server is working on a request (so silence is not the client's doing).
    pub(super) fn server_busy(&self) -> bool {
        self.server_side.load(Ordering::Relaxed) > self.awaiting_client.load(Ordering::Relaxed)
    }
}

/// Held while a handler runs.
pub(super) struct Handling(Arc<Activity>);

impl Handling {
    pub(super) fn start(activity: &Arc<Activity>) -> Handling {
        activity.requested.store(true, Ordering::Relaxed);
        activity.server_side.fetch_add(1, Ordering::Relaxed);
        Handling(activity.clone())
    }
}

impl Drop for Handling {
    fn drop(&mut self) {
        self.0.server_side.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A connection's stream that notes its traffic.
pub(super) struct Watched<I> {
    inner: I,
    activity: Arc<Activity>,
}

impl<I> Watched<I> {
    pub(super) fn new(inner: I, activity: Arc<Activity>) -> Watched<I> {
        Watched { inner, activity }
    }

    fn note<T>(
        &self,
        polled: Poll<io::Result<T>>,
        moved: impl Fn(&T) -> bool,
    ) -> Poll<io::Result<T>> {
        if let Poll::Ready(Ok(v)) = &polled
            && moved(v)
        {
            self.activity.touch();
        }
        polled
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Watched<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        let grew = buf.filled().len() > before;
        self.note(polled, |_| grew)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Watched<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.note(polled, |n| *n > 0)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.note(polled, |n| *n > 0)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Whose move it is while a body waits for its next piece.
#[derive(Debug, Clone, Copy)]
pub(super) enum Side {
    /// A request body: the client has to send more.
    Client,
    /// A response body: the server has to produce more.
    Server,
}

/// A request or response body that notes when it waits.
pub(super) struct Tracked<B> {
    inner: B,
    activity: Arc<Activity>,
    side: Side,
    waiting: bool,
}

impl<B> Tracked<B> {
    pub(super) fn new(inner: B, activity: Arc<Activity>, side: Side) -> Tracked<B> {
        Tracked {
            inner,
            activity,
            side,
            waiting: false,
        }
    }

    fn counter(&self) -> &AtomicUsize {
        match self.side {
            Side::Client => &self.activity.awaiting_client,
            Side::Server => &self.activity.server_side,
        }
    }

    fn set_waiting(&mut self, waiting: bool) {
        if waiting != self.waiting {
            self.waiting = waiting;
            if waiting {
                self.counter().fetch_add(1, Ordering::Relaxed);
            } else {
                self.counter().fetch_sub(1, Ordering::Relaxed);
            }
        }
    }
}

impl<B> Drop for Tracked<B> {
    fn drop(&mut self) {
        self.set_waiting(false);
    }
}

impl<B: Body + Unpin> Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        self.set_waiting(polled.is_pending());
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Waker;

    /// A body that has nothing yet, or one last piece.
    struct Later(bool);

    impl Body for Later {
        type Data = axum::body::Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
            if self.0 {
                Poll::Ready(None)
            } else {
                Poll::Pending
            }
        }
    }

    fn poll(body: &mut Tracked<Later>) {
        let mut cx = Context::from_waker(Waker::noop());
        let _ = Pin::new(body).poll_frame(&mut cx);
    }

    #[test]
    fn busy_while_the_server_works_not_while_it_waits_for_the_client() {
        let activity = Activity::new();
        assert!(!activity.server_busy() && !activity.requested());

        // A handler at work.
        let handling = Handling::start(&activity);
        assert!(activity.server_busy() && activity.requested());

        // ... waiting for a request body that does not come: the client's move.
        let mut request = Tracked::new(Later(false), activity.clone(), Side::Client);
        poll(&mut request);
        assert!(!activity.server_busy());
        request.inner.0 = true;
        poll(&mut request);
        assert!(activity.server_busy());
        drop(request);
        drop(handling);
        assert!(!activity.server_busy());

        // A response body whose next piece the server is still making.
        let mut response = Tracked::new(Later(false), activity.clone(), Side::Server);
        poll(&mut response);
        assert!(activity.server_busy());
        // Dropped half way (the client went away): nothing is left counted.
        drop(response);
        assert!(!activity.server_busy());
    }
}
