"""Databento's live API as a source of MBO frames (``orderflow live``) and a fake live gateway (docs/live.md)."""
