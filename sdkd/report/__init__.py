"""From evaluation files to the report's tables and figures.

- :mod:`sdkd.report.results`: the results model: a config's expected runs with their
  metrics, evaluation files and histories, and the answers every output shares (plain
  baseline, best setting, band errors, whether the runs belong together).
- :mod:`sdkd.report.aggregate`: every expected run's evaluation file → one CSV row
  (status ``ok``, ``missing`` or ``invalid``) and ``summary.json``, the headline
  numbers (usable as DVC metrics) and the consistency findings.
- :mod:`sdkd.report.figures`: the PNG figures and their ``figures.json`` manifest.
- :mod:`sdkd.report.html`: ``results/report.html``, one self-contained page rendered
  from ``templates/report.html.j2``, from the parts :mod:`~sdkd.report.view` (each
  dataset's tables), :mod:`~sdkd.report.verdicts` (the verdict sentences),
  :mod:`~sdkd.report.setup` and :mod:`~sdkd.report.provenance` (the Setup section),
  :mod:`~sdkd.report.tables` (frames → HTML) and :mod:`~sdkd.report.fmt` (numbers → text).
- :mod:`sdkd.report.readme`: the README's Results block.
- :mod:`sdkd.report.compare`: ``sdkd compare A B``, two results folders' metrics side
  by side with seed-spread intervals (a terminal table and one page).
- :mod:`sdkd.report.csvfile`: the CSV inputs (``metrics.csv``, ``history.csv``,
  benchmark TSVs), read with a size bound and checked.

The modules import pandas and matplotlib; import them where they are used, not here,
so that ``import sdkd.report`` stays cheap for the command line.
"""
