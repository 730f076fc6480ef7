"""Evaluation: the paper's metrics on real video, the project beside DPR and two floors, speed, in one command.

``python -m evaluation --clips CLIPS --out REPORT`` (see ``evaluation/run.py`` and docs/evaluation.md). Modules:
``dpr`` (DPR's network, own implementation), ``metrics``, ``systems``, ``schedule``, ``frames`` (tracked crops),
``report`` (tables, plots, contact sheets), ``memory`` (peak RSS).
"""
