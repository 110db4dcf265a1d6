"""See plugin.py."""
