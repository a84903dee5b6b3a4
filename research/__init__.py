"""The lab: the evidence's schema and results page, recipe studies, the benchmark."""
