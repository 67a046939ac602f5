"""KFP-style pipelines written once, run by raypipe's DSL and compiled by the real kfp SDK."""
