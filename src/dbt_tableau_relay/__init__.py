"""dbt-tableau-relay: refresh the Tableau content downstream of a dbt Cloud job."""

__version__ = "0.1.0"
