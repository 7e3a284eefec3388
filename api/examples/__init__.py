"""Small clients of the API, meant to be read (and run against `./scripts/demo`)."""
