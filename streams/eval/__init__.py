"""``guardian eval``: whether refinement improves answers, measured through the real
pipeline on rule-checkable tasks."""
