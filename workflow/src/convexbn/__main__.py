"""`python -m convexbn` runs the command-line interface."""

from convexbn.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
