//! Crypto-conditions (ED25519-SHA-256, THRESHOLD-SHA-256).
