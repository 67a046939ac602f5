"""The raypipe service: a REST API over stored pipelines, runs and recurring runs."""
