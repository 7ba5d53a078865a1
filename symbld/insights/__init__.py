"""Offline conversation intelligence: questions, action items, follow-ups, topics, trackers.

Rule-based and standard-library (plus rapidfuzz for near spellings in trackers); see
docs/insights.md for the method, the measured precision/recall and the conventions.
"""

from symbld.insights.analyzer import Analyzer, insight_types
from symbld.insights.trackers import TrackerError, validate_trackers

__all__ = ["Analyzer", "TrackerError", "insight_types", "validate_trackers"]
