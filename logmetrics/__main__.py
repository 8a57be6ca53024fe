from logmetrics.cli import script

script()
