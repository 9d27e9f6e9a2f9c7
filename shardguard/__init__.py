"""shardguard: audit LLM training data (web, SFT, preference) for poisoning before training on it.

One import namespace; its layers import only downward (checked by import-linter, see pyproject.toml):

    core -> ingest -> embed -> detectors -> engine -> report -> pipeline -> service -> eval -> flows -> cli
"""

from pathlib import Path

__version__ = "0.1.0"

PACKAGE_DIR = Path(__file__).resolve().parent
SAMPLE_DIR = PACKAGE_DIR / "sample"  # the bundled real datasets (each with SOURCE.txt and license)
MODELS_DIR = PACKAGE_DIR / "models"
