"""pv_xconnect: not implemented yet; see its issue. Registers no hooks."""
