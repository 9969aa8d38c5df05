//! HTTP/1 codec (being written).
