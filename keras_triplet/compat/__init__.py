"""Compatibility layers for code written against other metric-learning packages."""
