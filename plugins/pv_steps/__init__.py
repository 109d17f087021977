"""pv_steps: not implemented yet; see its issue. Registers no hooks."""
