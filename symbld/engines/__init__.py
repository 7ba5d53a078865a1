"""Engines turn audio into Symbl-shaped events."""
