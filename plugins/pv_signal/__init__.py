"""pv_signal: not implemented yet; see its issue. Registers no hooks."""
