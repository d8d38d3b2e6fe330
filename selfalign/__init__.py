"""selfalign: declarative pipelines of LLM stages that build synthetic alignment data."""

__version__ = "0.1.0"
