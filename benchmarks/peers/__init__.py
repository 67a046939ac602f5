"""raypipe against the alternatives: the same five workloads in each system (``make bench``).

``workloads`` says what each workload is and checks its result; one ``sys_*`` module per
system writes the workloads idiomatically in that system; ``worker`` times them in a
process of their own; ``suite`` (``benchmarks/suite.py``) runs the rounds and ``report``
writes ``results.md`` and ``results.png``.
"""
