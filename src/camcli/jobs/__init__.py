"""Runs over inputs: the runner (:mod:`.runner`), what a job is (:mod:`.job`), the CAM job (:mod:`.cam`), the
feature-grid job (:mod:`.features`) and the typed results they produce (:mod:`.results`)."""
