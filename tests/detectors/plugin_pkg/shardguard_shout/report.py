from shardguard.report.html import esc


def render(disc: dict) -> str:
    return f"<p class=shout>{esc(disc.get('loud_rows'))} rows written in capitals</p>"
