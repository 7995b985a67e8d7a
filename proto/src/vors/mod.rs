//! VoRS v4: netstrings, control messages, Noise handshake, media packets, sessions.
