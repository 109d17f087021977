import os
import sys

# The engine's fakes (storage, runtime, clock) live beside its own tests.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pv_containers"))
