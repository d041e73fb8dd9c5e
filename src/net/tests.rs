//! Connection tests against scripted peers.
