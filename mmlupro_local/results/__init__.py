"""Results files (typed records, the crash-safe store) and what is made of them:
figures, statistics, reports, comparisons and the HTML page."""
