//! The byte classes of the HTTP/1 grammar, and the byte range every parsed head is built from.
//!
//! `TOKEN_BYTES` (`tchar`, RFC 9110 §5.6.2) answers [`is_token_byte`]: the field pass checks
//! `Connection` options with it, the body decoder chunk extensions and trailer field names.
//! `REG_NAME_BYTES` (RFC 3986 §3.2.2) is what the authority checks of module `target` accept in a
//! host. Both tables are built at compile time, so a check costs one load per byte.
//!
//! [`Span`] is how a head remembers where its parts are: `httparse` hands back subslices of the
//! buffer, [`Span::of`] turns each into `u32` offsets, and the head types turn spans back into
//! slices of the frozen head bytes ([`Span::get`]) when an accessor is called. Nothing here
//! allocates or fails.

/// `tchar` of RFC 9110 §5.6.2.
static TOKEN_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut byte = 0;
    while byte < 256 {
        let b = byte as u8;
        table[byte] = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'!' | b'#'
                    | b'$'
                    | b'%'
                    | b'&'
                    | b'\''
                    | b'*'
                    | b'+'
                    | b'-'
                    | b'.'
                    | b'^'
                    | b'_'
                    | b'`'
                    | b'|'
                    | b'~'
            );
        byte += 1;
    }
    table
};

/// Is `byte` a `tchar` (a byte allowed in a token such as a field name)?
pub(super) fn is_token_byte(byte: u8) -> bool {
    TOKEN_BYTES[usize::from(byte)]
}

/// Bytes of a `reg-name` (RFC 3986 §3.2.2: unreserved, sub-delims and `%`).
pub(super) static REG_NAME_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut byte = 0;
    while byte < 256 {
        let b = byte as u8;
        table[byte] = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
                    | b'%'
            );
        byte += 1;
    }
    table
};

/// A byte range of the frozen head. `u32` keeps a field entry small; heads are bounded by
/// `HeadLimits::max_head`, which is checked against `u32::MAX`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Span {
    pub(super) start: u32,
    pub(super) end: u32,
}

impl Span {
    pub(super) fn new(start: usize, end: usize) -> Self {
        Self {
            start: start as u32,
            end: end as u32,
        }
    }

    /// The span of `part` inside `base`; `part` must be a subslice of `base` (as everything
    /// `httparse` returns is a subslice of the buffer it was given).
    pub(super) fn of(base: &[u8], part: &[u8]) -> Self {
        let start = (part.as_ptr() as usize).wrapping_sub(base.as_ptr() as usize);
        debug_assert!(start <= base.len() && part.len() <= base.len() - start);
        Self::new(start, start + part.len())
    }

    pub(super) fn get(self, bytes: &[u8]) -> &[u8] {
        &bytes[self.start as usize..self.end as usize]
    }

    pub(super) fn len(self) -> usize {
        (self.end - self.start) as usize
    }
}
