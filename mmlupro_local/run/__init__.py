"""The evaluation stage: a request settled once into a plan (plan.py), what is evaluated
(targets/), prompts fitted to the context (fitting.py), and the runner that drives
dataset -> prompt -> generate -> score -> store (runner.py)."""
