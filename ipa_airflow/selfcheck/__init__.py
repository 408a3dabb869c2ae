"""`ipa selfcheck`: the bad-input corpus, run in-process, counted per outcome.

`corpus` loads and checks the cases (`cases/*.yaml`), `runner` runs each in a fresh folder with a time
limit and classifies what happened, `kinds/<kind>.py` knows how to run one kind of case (`cli`: the `ipa`
command; others: a canned Prometheus answer, a webhook delivery), `report` prints the counts.
"""

from .corpus import Case, CorpusError, load_cases, select
from .runner import FAILURES, OUTCOMES, Report, Row, run_case, run_cases

__all__ = [
    "FAILURES",
    "OUTCOMES",
    "Case",
    "CorpusError",
    "Report",
    "Row",
    "load_cases",
    "run_case",
    "run_cases",
    "select",
]
