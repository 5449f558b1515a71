"""`simvp-unet` commands of this group (being written)."""

import argparse


def register(commands: argparse._SubParsersAction) -> None:
    """Add this group's sub-commands to the main parser."""
