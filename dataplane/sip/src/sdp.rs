//! SDP (RFC 8866) parsing and rewriting. Built in its own module.
