from dbt_tableau_relay.cli import main

main()
