"""shardguard: audit LLM training data (web, SFT, preference) for poisoning before training on it."""

__version__ = "0.1.0"
