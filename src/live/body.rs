//! A subscriber's response body: its frames as they come, and what ties it
//! to its connection (the connection counts as busy while it is open, and
//! can be cut when the subscriber lags without reading).

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use hyper::body::Frame;

use super::Subscriber;

/// The frames of one subscription.
pub struct LiveBody {
    frames: Pin<Box<dyn Stream<Item = Bytes> + Send>>,
    subscriber: Arc<Subscriber>,
    /// Held while the body lives (the connection's "request in progress").
    guard: Option<Box<dyn Send + Sync>>,
}

/// How a handler's response carries a [`LiveBody`] out to the server: the
/// handlers answer with full bodies, and only this extension makes one live.
#[derive(Clone)]
struct Carried(Arc<Mutex<Option<LiveBody>>>);

impl LiveBody {
    pub fn new(frames: impl Stream<Item = Bytes> + Send + 'static, subscriber: Arc<Subscriber>) -> Self {
        LiveBody { frames: Box::pin(frames), subscriber, guard: None }
    }

    /// Makes `response` carry this body (see [`LiveBody::take_from`]).
    pub fn attach_to<B>(self, response: &mut http::Response<B>) {
        response.extensions_mut().insert(Carried(Arc::new(Mutex::new(Some(self)))));
    }

    /// The live body a response carries, if any.
    pub fn take_from<B>(response: &mut http::Response<B>) -> Option<LiveBody> {
        let carried = response.extensions_mut().remove::<Carried>()?;
        let body = carried.0.lock().unwrap_or_else(|p| p.into_inner()).take();
        body
    }

    /// Ties the body to its connection: `guard` is held until the body is
    /// dropped, and `cut` closes the connection if the subscriber lags.
    pub fn hold(&mut self, guard: Box<dyn Send + Sync>, cut: Box<dyn Fn() + Send + Sync>) {
        self.guard = Some(guard);
        self.subscriber.on_lag(cut);
    }
}

impl std::fmt::Debug for LiveBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveBody").field("subscriber", &self.subscriber.id).finish_non_exhaustive()
    }
}

impl hyper::body::Body for LiveBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.frames.poll_next_unpin(cx).map(|frame| frame.map(|b| Ok(Frame::data(b))))
    }
}
