"""The emulators the package ships: stand-alone doubles of the APIs the relay talks to.

Each imports nothing of the relay, so a user can run it for a demo, and the
tests run the relay against it over real HTTP:

- `tableau`: the Tableau REST API (and its Metadata API);
- `dbt_cloud`: the dbt Cloud Admin API v2 (runs, steps, per-step artifacts).
"""
