"""The behaviour tests, one file per area; test/test_fdw.py finds and runs them."""
