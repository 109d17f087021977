# gunicorn configuration for pvcore: `gunicorn -c contrib/gunicorn.conf.py`.
# The settings live in the package (pvcore/gunicorn_conf.py) so that tests and
# installed devices use exactly the same configuration; override with PVCORE_*.
from pvcore.gunicorn_conf import *  # noqa: F401,F403
