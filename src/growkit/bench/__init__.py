"""Benchmarks behind ``growkit bench ...`` (installed with the package).

- `growkit.bench.speedup`: ``growkit bench speedup`` — compute saved by growth schedules against a
  from-scratch frontier, "No Train No Gain" style.
- `growkit.bench.schedules`: the schedules and size presets it runs, as plain data.
"""
