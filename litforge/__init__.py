"""litforge: Lightning training for the objectives of ten LLM research papers, composed from YAML."""

__version__ = "0.1.0"
