"""Command line: thin commands that parse and call into the package."""

import click


@click.group()
def main() -> None:
    """dbt-tableau-relay: refresh Tableau content when dbt Cloud jobs finish."""
