"""A run's results, read back for analysis: ``vframework.results.load(DIR)`` returns its summary,
host counters, time series and ledger as pandas DataFrames (see :mod:`vframework.run.analysis`)."""

from vframework.run.analysis import Results, column_name, load

__all__ = ["Results", "column_name", "load"]
