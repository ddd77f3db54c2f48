//! Digest authentication (RFC 7616 / RFC 8760). Built in its own module.
