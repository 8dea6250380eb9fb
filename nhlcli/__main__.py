"""`python -m nhlcli ...` (also what `torchrun -m nhlcli train ...` runs)."""

from nhlcli.cli.app import main

if __name__ == "__main__":
    main()
