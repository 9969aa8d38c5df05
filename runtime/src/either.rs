//! One of two futures, as one type: how a connection handler serves plain and TLS listeners
//! without boxing either path.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

pin_project_lite::pin_project! {
    /// Either future `A` or future `B`, with the same output.
    #[project = EitherProj]
    pub enum Either<A, B> {
        Left { #[pin] future: A },
        Right { #[pin] future: B },
    }
}

impl<A, B> Either<A, B> {
    pub fn left(future: A) -> Self {
        Either::Left { future }
    }

    pub fn right(future: B) -> Self {
        Either::Right { future }
    }
}

impl<A, B, T> Future for Either<A, B>
where
    A: Future<Output = T>,
    B: Future<Output = T>,
{
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        match self.project() {
            EitherProj::Left { future } => future.poll(cx),
            EitherProj::Right { future } => future.poll(cx),
        }
    }
}
