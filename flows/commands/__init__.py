"""Command groups of the `aeflow` CLI; each module defines `register(subparsers)`."""
