"""What the benchmark scripts share: paths, record writing, the runs' settings, machine facts,
DARec step timing and the tiny setup of their ``--quick`` modes.

The scripts in ``benchmarks/`` import from here, never from each other. Run a script from the
repository root (``python benchmarks/NAME.py``): its folder is then first on ``sys.path``, so
``benchlib`` imports as a top-level package.

- ``benchlib.paths``: where data, results and docs are;
- ``benchlib.records``: JSON records, run-and-store of child runs, docs blocks and tables;
- ``benchlib.settings``: the baselines' and DARec's run settings per dataset;
- ``benchlib.machine``: peak memory, the CPU model and its bf16/AMX features;
- ``benchlib.darec_steps``: DARec models on popularity-drawn batches, timed training steps;
- ``benchlib.quick``: the tiny dataset and tiny LLaMA of every script's ``--quick`` mode.
"""
