"""``make bench``: pvcore's speed, memory and start-up, each against a baseline
measured in the same run (``python -m pvcore.bench [--quick]``)."""
