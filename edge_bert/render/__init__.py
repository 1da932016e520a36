"""Rendering results for people: terminal tables (rich), Markdown, PNG plots, the cross-device results table."""
