"""The embedded offline engine: Silero VAD + Whisper (faster-whisper) or PocketSphinx."""

from symbld.engines.local.engine import LocalEngine

__all__ = ["LocalEngine"]
