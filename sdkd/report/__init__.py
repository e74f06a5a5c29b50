"""From evaluation files to the report's tables and figures.

- :mod:`sdkd.report.aggregate`: every expected run's evaluation file → one CSV row
  (status ``ok``, ``missing`` or ``invalid``) and ``summary.json``, the headline
  numbers (usable as DVC metrics).
- :mod:`sdkd.report.figures`: the PNG figures and their ``figures.json`` manifest.
- :mod:`sdkd.report.html`: ``results/report.html``, one self-contained page rendered
  from ``templates/report.html.j2``.

The modules import pandas and matplotlib; import them where they are used, not here,
so that ``import sdkd.report`` stays cheap for the command line.
"""
