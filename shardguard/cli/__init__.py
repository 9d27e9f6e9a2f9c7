"""The `shardguard` command. Verbs load lazily so `shardguard scan` does not import torch or Beam.

Exit codes (../CONTRACT): 0 the command completed (whatever a scan found); 2 usage error;
3 `--fail-on` named a category that was flagged (`verify`: the data changed since the scan); 1 the scan
itself failed.
"""

from __future__ import annotations

import importlib
import os
import sys

import click

# verb -> "module:attribute" of a click command. A new verb is one line here and its own module.
LAZY = {
    "scan": "shardguard.cli.scan:scan_cmd",
    "demo": "shardguard.cli.demo:demo_cmd",
    "poison": "shardguard.cli.poison:poison_cmd",
    "bench": "shardguard.cli.bench:bench_cmd",
    "compare": "shardguard.cli.compare:compare_cmd",
    "serve": "shardguard.cli.service:serve_cmd",
    "history": "shardguard.cli.service:history_cmd",
    "review": "shardguard.cli.service:review_cmd",
    "ui": "shardguard.cli.ui:ui_cmd",
    "verify": "shardguard.cli.verify:verify_cmd",
}


def quiet_environment() -> None:
    """No telemetry, no hub downloads, no third-party progress bars, and a Prefect start-up timeout that
    works on these machines."""
    for k, v in {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "DO_NOT_TRACK": "1",
                 "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                 "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
                 "TOKENIZERS_PARALLELISM": "false",
                 # no third-party progress bars or load reports (transformers' "Loading weights" bar
                 # follows the hub's switch); the scan shows its own progress
                 "HF_HUB_DISABLE_PROGRESS_BARS": "1", "TRANSFORMERS_VERBOSITY": "error",
                 "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1"}.items():
        os.environ.setdefault(k, v)


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return sorted(LAZY)

    def get_command(self, ctx, name):
        target = LAZY.get(name)
        if target is None:
            return None
        mod, attr = target.split(":")
        try:
            return getattr(importlib.import_module(mod), attr)
        except (ImportError, AttributeError) as e:
            why = f"{type(e).__name__}: {e}"

            @click.command(name=name, help=f"(not available: {why})")
            def missing():
                raise click.ClickException(f"'{name}' is not available in this build: {why}")

            return missing


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="shardguard")
def main():
    """shardguard: audit LLM training data (web, SFT, preference) for poisoning before training on it."""
    quiet_environment()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
