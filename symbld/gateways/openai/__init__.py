"""OpenAI-compatible speech-to-text (``/v1/audio/transcriptions``, ``/v1/models``): docs/openai-api.md."""
