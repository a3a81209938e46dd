"""`python -m wattlens` runs the same CLI as the `wattlens` console script."""

from wattlens.cli.app import main

if __name__ == "__main__":
    main()
