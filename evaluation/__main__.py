"""``python -m evaluation --clips CLIPS... --out REPORT/``: see evaluation/run.py."""
import sys

from evaluation.run import main

sys.exit(main())
