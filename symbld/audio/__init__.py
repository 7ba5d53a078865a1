"""Audio sources: everything that delivers 16 kHz mono 16-bit PCM to a session."""
