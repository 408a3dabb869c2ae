"""`python -m ipa_airflow.cli`, as the `ipa` command."""

import sys

from . import main

sys.exit(main())
