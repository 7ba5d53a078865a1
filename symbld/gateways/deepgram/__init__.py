"""Deepgram-compatible listen v1: pre-recorded ``POST /v1/listen`` and the live WebSocket (docs/deepgram-api.md)."""
