//! A head and a body piece written with one `writev`: the response head (and whatever small
//! pieces were queued with it) goes out with the first large body piece in one operation,
//! and the body piece is not copied.

use bytes::{Bytes, BytesMut};
use monoio::buf::IoVecBuf;

/// Two buffers for one vectored write; see the module doc.
pub struct Gather {
    head: BytesMut,
    body: Bytes,
    /// On the heap, so that the pointer handed to the kernel does not move with `self`.
    iovecs: Box<[libc::iovec; 2]>,
}

impl Gather {
    pub fn new(head: BytesMut, body: Bytes) -> Self {
        let iovecs = Box::new([
            libc::iovec {
                iov_base: head.as_ptr() as *mut libc::c_void,
                iov_len: head.len(),
            },
            libc::iovec {
                iov_base: body.as_ptr() as *mut libc::c_void,
                iov_len: body.len(),
            },
        ]);
        Self { head, body, iovecs }
    }

    /// The head's buffer back, for reuse.
    pub fn into_head(self) -> BytesMut {
        drop(self.body);
        self.head
    }
}

// SAFETY: the two iovecs point at the bytes of `head` and `body`, which `Gather` owns and never
// changes (no method gives mutable access to them), so they stay valid and in place for as long
// as the runtime holds the value; the iovec array itself is boxed, so its address does not move
// when the `Gather` does, and it holds exactly the two entries `read_iovec_len` reports.
#[allow(unsafe_code)]
unsafe impl IoVecBuf for Gather {
    fn read_iovec_ptr(&self) -> *const libc::iovec {
        self.iovecs.as_ptr()
    }

    fn read_iovec_len(&self) -> usize {
        2
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::memory_pair;
    use crate::test_support::run;
    use monoio::io::{AsyncReadRentExt, AsyncWriteRentExt};

    #[test]
    fn head_and_body_arrive_in_order() {
        run(async {
            let (mut a, mut b) = memory_pair();
            let body = Bytes::from(vec![7u8; 100_000]);
            let gather = Gather::new(BytesMut::from(&b"HEAD\r\n"[..]), body);
            let writer = monoio::spawn(async move {
                let (result, gather) = a.write_vectored_all(gather).await;
                assert_eq!(result.unwrap(), 100_006);
                assert_eq!(&gather.into_head()[..], b"HEAD\r\n");
            });
            let (read, buf) = b.read_exact(vec![0u8; 100_006]).await;
            read.unwrap();
            assert_eq!(&buf[..6], b"HEAD\r\n");
            assert!(buf[6..].iter().all(|&x| x == 7));
            writer.await;
        });
    }
}
