"""pvcontrol CLI (see issue 9)."""


def main(argv=None):
    raise SystemExit("pvcontrol: not built yet")
