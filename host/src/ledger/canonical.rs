//! Canonical JSON serialization, as the drivers' rapidjson writes it.
