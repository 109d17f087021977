"""pv_metadata: not implemented yet; see its issue. Registers no hooks."""
