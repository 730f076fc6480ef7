"""``python -m evaluation --clips CLIPS... --out REPORT/``: see evaluation/run.py.
``python -m evaluation novel-view ...``: the novel-view measurements (evaluation/novel_view.py)."""
import sys

if len(sys.argv) > 1 and sys.argv[1] == "novel-view":
    from evaluation.novel_view import main as novel_view_main

    sys.exit(novel_view_main(sys.argv[2:]))

from evaluation.run import main

sys.exit(main())
