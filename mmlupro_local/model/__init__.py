"""Where a model comes from (a path or the hub), what its GGUF header says, its
fingerprint, and whether it fits this machine's memory."""
