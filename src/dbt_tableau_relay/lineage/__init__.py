"""Lineage: which Tableau items a dbt run's rebuilt models feed, and why.

Pure code over data the two API clients fetch (`dbt_cloud.py` for the run's
artifacts, `tableau.py` for the Metadata API); nothing here speaks HTTP or
touches the store, so every decision is a function tested on real artifacts.

- `model`: the shared vocabulary (relations, Tableau items, decisions);
- `artifacts`: typed readers of manifest.json and run_results.json;
- `steps`: which run steps built something (not `dbt docs generate`);
- `exposures`: dbt exposures of type dashboard that point at Tableau items;
- `tableau_graph`: Metadata API queries and what in their answers holds an extract;
- `decide`: refresh or skip, with the dbt nodes behind each decision;
- `explain`: decisions as `explain` lines and as the JSON stored with each job.
"""
