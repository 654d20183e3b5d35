"""makerflow: a crypto market-making pipeline built as Bytewax dataflows."""

__version__ = "0.1.0"
